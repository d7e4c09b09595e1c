/**
 * model: what a job is. The job API users write (job.ts: defineJob, the registry), the
 * documents a job leaves in S3 (documents.ts: job.json, manifest.json, status.json, outcomes),
 * the S3 layout and key rules (keys.ts), status.json's compare-and-swap (status.ts), and job
 * state events (events.ts).
 */
export * from './documents.ts';
export * from './events.ts';
export * from './job.ts';
export * from './keys.ts';
export * from './status.ts';
