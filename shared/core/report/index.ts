/**
 * report: the job report, one self-contained HTML page (inline SVG and CSS, no script, no
 * fetch) drawn from the job's documents: timeline, concurrency, throughput, durations, errors
 * and cost.
 */
export * from './report.ts';
