/** Printing and saving benchmark reports: a table for people, JSON for tools. */
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus } from 'node:os';
import { join, resolve } from 'node:path';

// Benchmarks run on Node 20, where every AWS SDK client warns about 2027's Node 22 requirement.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export const root = resolve(import.meta.dirname, '..');
/** Generated inputs live here, reused between runs. */
export const dataDir = join(root, 'node_modules/.cache/fanout/bench');

/** One benchmark's findings. */
export interface Report {
  name: string;
  title: string;
  /** Table columns and rows, printed as they are. */
  columns: string[];
  rows: (string | number)[][];
  /** Ratios and checks the targets speak of. */
  figures: Record<string, number | string | boolean>;
  notes?: string[];
}

/** The machine the figures come from. */
export const machine = () => ({
  cores: availableParallelism(),
  cpu: cpus()[0]?.model ?? 'unknown',
  node: process.version,
});

/** Prints a report as a table. */
export function print(report: Report): void {
  const widths = report.columns.map((c, i) =>
    Math.max(c.length, ...report.rows.map((r) => String(r[i] ?? '').length)),
  );
  const line = (cells: (string | number)[]) =>
    cells
      .map((cell, i) =>
        i === 0 ? String(cell).padEnd(widths[i]!) : String(cell).padStart(widths[i]!),
      )
      .join('  ');
  process.stdout.write(`\n## ${report.title}\n\n${line(report.columns)}\n`);
  for (const row of report.rows) process.stdout.write(`${line(row)}\n`);
  for (const [k, v] of Object.entries(report.figures)) process.stdout.write(`  ${k}: ${v}\n`);
  for (const note of report.notes ?? []) process.stdout.write(`  note: ${note}\n`);
}

/** Writes bench/results/{name}.json. */
export async function save(report: Report): Promise<void> {
  const dir = join(root, 'bench/results');
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, `${report.name}.json`),
    `${JSON.stringify({ ...report, date: new Date().toISOString(), machine: machine() }, null, 2)}\n`,
  );
}

/** Runs a benchmark module's `run` when the module is executed directly. */
export async function runIfMain(url: string, run: () => Promise<Report>): Promise<void> {
  if (url === `file://${process.argv[1]}`) {
    const report = await run();
    print(report);
    await save(report);
  }
}

/**
 * Runs a command to its end; returns its stdout, wall time and peak RSS: the largest sum of the
 * resident sets of the process and all its descendants (the local runtime's sandboxes are child
 * processes), sampled every 100 ms while it runs. A walk of /proc reads a few files per thread
 * of every process (about 80 for a local run); every 10 ms it kept one of the machine's two
 * cores busy, and the job it measured ran slower for it. Heaps grow and shrink over seconds, so
 * 100 ms misses no peak that lasts.
 */
export async function measured(
  command: string,
  args: string[],
): Promise<{ stdout: string; wallMs: number; peakRssMb: number; code: number }> {
  const started = performance.now();
  const child = spawn(command, args, { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] });
  let stdout = '';
  child.stdout.on('data', (piece: Buffer) => {
    stdout += piece.toString('utf8');
  });
  let peakKb = 0;
  let sampling = false;
  const sample = async () => {
    if (sampling || child.pid === undefined) return;
    sampling = true;
    peakKb = Math.max(peakKb, await treeRssKb(child.pid));
    sampling = false;
  };
  const timer = setInterval(() => void sample(), 100);
  const code = await new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
  clearInterval(timer);
  return { stdout, wallMs: performance.now() - started, peakRssMb: peakKb / 1024, code };
}

/** The resident set (kB) of a process and every descendant, as /proc shows them now. */
async function treeRssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  let kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  for (const task of tasks) {
    const children = await readFile(`/proc/${pid}/task/${task}/children`, 'utf8').catch(() => '');
    for (const c of children.split(' ').filter(Boolean)) kb += await treeRssKb(Number(c));
  }
  return kb;
}

/** Milliseconds to a readable figure. */
export const ms = (value: number) => Math.round(value);
/** A rate with thousands separators. */
export const rate = (value: number) => Math.round(value).toLocaleString('en');
