/**
 * run: a job from submission to its last chunk. engine/ runs tasks of any kind with retries,
 * backups, the throttle ceiling, cancel and takeover checks, billing and a record of every
 * attempt; the coordinator (coordinator.ts) takes a job over, plans it (plan-job.ts) and runs
 * its map stage (map-stage.ts) through the engine; the worker (worker.ts) runs one chunk; the
 * straggler rule (speculation.ts); submit, cancel and redrive (submit.ts, control.ts); and the
 * sweeper that resumes jobs whose coordinator was lost (sweep.ts).
 */
export * from './control.ts';
export * from './coordinator.ts';
export * from './engine/index.ts';
export * from './map-stage.ts';
export * from './plan-job.ts';
export * from './speculation.ts';
export * from './submit.ts';
export * from './sweep.ts';
export * from './worker.ts';
