/**
 * base: what every stage stands on. Errors with stable codes (errors.ts), the ports the core
 * talks to the world through (ports.ts: object store, invoker, clock), Lambda's limits and how
 * the timeouts fit (limits.ts), and small primitives: one backoff, a bounded parallel map whose
 * results come in order, a byte pipe with backpressure, byte helpers, a seeded random, and a
 * store that counts its requests. Imports nothing from the other stages but cost/.
 */
export * from './backoff.ts';
export * from './bytes.ts';
export * from './counting-store.ts';
export * from './errors.ts';
export * from './limits.ts';
export * from './parallel.ts';
export * from './pipe.ts';
export * from './ports.ts';
export * from './random.ts';
export * from './text-upload.ts';
