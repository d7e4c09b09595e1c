/**
 * The client half of bench/dispatch.ts, run in its own process as a coordinator is: sends
 * `invocations` invocations of `function` to `endpoint` through LambdaInvoker (the real SDK
 * client), `lanes` at a time, with the deadline the coordinator gives each worker invocation,
 * twice — a fresh process first, then the same process again, as a warm coordinator container
 * is for its next job — and reports both elapsed times in milliseconds to its parent.
 *
 * Usage (forked by bench/dispatch.ts): dispatch-client.ts ENDPOINT FUNCTION INVOCATIONS LANES
 */
import { LambdaInvoker } from '#adapters/lambda-invoker.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const [endpoint, name, invocationsArg, lanesArg] = process.argv.slice(2);
const invocations = Number(invocationsArg);
const lanes = Number(lanesArg);
if (!endpoint || !name || !(invocations > 0) || !(lanes > 0)) {
  process.stderr.write('usage: dispatch-client.ts ENDPOINT FUNCTION INVOCATIONS LANES\n');
  process.exit(2);
}
const functionName: string = name;
// What the coordinator passes for a worker with Lambda's maximum timeout of 15 minutes.
const timeoutMs = 15 * 60_000 + 30_000;
const invoker = new LambdaInvoker({ endpoint });
// Warm the sockets and the JIT first.
await Promise.all(
  Array.from({ length: lanes }, (_, i) =>
    invoker.invoke(functionName, { value: i }, { timeoutMs }),
  ),
);
/** Sends the invocations, `lanes` at a time; returns the elapsed milliseconds. */
async function round() {
  let next = 0;
  const started = performance.now();
  const lane = async () => {
    while (next < invocations) {
      next += 1;
      await invoker.invoke(functionName, { value: next }, { timeoutMs });
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  return performance.now() - started;
}
const coldMs = await round();
const warmMs = await round();
invoker.destroy();
process.send?.({ coldMs, warmMs });
