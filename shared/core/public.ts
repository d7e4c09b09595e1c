/**
 * fanout's public API for job authors: `import { defineJob, RecordSyntaxError } from 'fanout'`
 * from a job file anywhere (the package's `exports` entry), with no `#core/...` import.
 */
export type { AnyJob, BadRecordPolicy, JobDefinition, Reducer } from './job.ts';
export { createRegistry, defineJob } from './job.ts';
export type { RecordFormat } from './records.ts';
export { RecordSyntaxError, SKIP } from './records.ts';
