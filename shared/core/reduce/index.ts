/**
 * reduce: the end of a job. The reducer (reducer.ts) merges the chunks' accumulators in order
 * (a tree of invocations for a large fan-in) or concatenates map-only outputs in input order,
 * writes the result, and only then marks the job SUCCEEDED; result-json.ts writes a result
 * object with its keys in ascending order.
 */
export * from './keyed.ts';
export * from './reducer.ts';
export * from './result-json.ts';
