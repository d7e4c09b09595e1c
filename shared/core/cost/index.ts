/**
 * cost: what a job costs on AWS. Usage (Lambda GB-seconds and requests, S3 requests, API
 * calls), a dated price table, and the estimate (docs/COST.md).
 */
export * from './cost.ts';
