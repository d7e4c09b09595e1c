/**
 * fanout's public API for job authors: `import { defineJob, RecordSyntaxError } from 'fanout'`
 * from a job file anywhere (the package's `exports` entry), with no `#core/...` import.
 */

export type { RecordFormat } from './data/records.ts';
export { RecordSyntaxError, SKIP } from './data/records.ts';
export type {
  AnyJob,
  BadRecordPolicy,
  FlatJobDefinition,
  JobDefinition,
  Reducer,
} from './model/job.ts';
export { createRegistry, defineJob } from './model/job.ts';
