/**
 * The job registry: every job fanout can run, by name. The worker and reducer bundles include
 * this module, so a job is available on AWS and locally once it is listed here.
 *
 * To add your own job, write a module next to these (see README "Writing your own job") and add
 * it to the list below.
 */
import { createRegistry } from '#core/model/job.ts';
import { byField } from './by-field.ts';
import { scientists } from './scientists.ts';
import { wordcount } from './wordcount.ts';

export const jobs = createRegistry([scientists, byField, wordcount]);
