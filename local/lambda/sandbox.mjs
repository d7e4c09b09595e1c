// One Lambda sandbox: a child process that imports a function bundle once (the cold start) and
// then runs one invocation at a time for the local Lambda server, over its IPC channel. A process,
// as a Lambda sandbox is, so that one that runs out of memory dies alone, however it allocates.
// Plain JavaScript so it needs no loader.

import { pathToFileURL } from 'node:url';

const { bundle, handlerName, functionName, memoryMb, region } = JSON.parse(
  process.env.FANOUT_SANDBOX ?? '{}',
);
delete process.env.FANOUT_SANDBOX;
const parentPort = {
  postMessage: (message) => process.send(message),
  on: (event, listener) => process.on(event, listener),
};
// The server going away ends the sandbox (its channel closes), as it ends a thread.
process.on('disconnect', () => process.exit(0));

let handler;
try {
  const mod = await import(pathToFileURL(bundle).href);
  handler = mod[handlerName];
  if (typeof handler !== 'function') {
    throw Object.assign(new Error(`${handlerName} is not a function exported by the bundle`), {
      name: 'Runtime.HandlerNotFound',
    });
  }
  parentPort.postMessage({ type: 'ready' });
} catch (error) {
  parentPort.postMessage({ type: 'init-error', ...describe(error, 'Runtime.ImportModuleError') });
}

function describe(error, fallbackType) {
  const e = error instanceof Error ? error : new Error(String(error));
  return {
    errorType: e.name && e.name !== 'Error' ? e.name : fallbackType,
    errorMessage: e.message,
    trace: String(e.stack ?? '').split('\n'),
  };
}

parentPort.on('message', async (message) => {
  if (message.type !== 'invoke') return;
  const { id, event, deadline, requestId } = message;
  const context = {
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${region}:000000000000:function:${functionName}`,
    memoryLimitInMB: String(memoryMb),
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/${functionName}`,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
  try {
    const result = await handler(event, context);
    parentPort.postMessage({
      type: 'result',
      id,
      ok: true,
      payload: JSON.stringify(result ?? null),
    });
  } catch (error) {
    parentPort.postMessage({ type: 'result', id, ok: false, ...describe(error, 'Error') });
  }
});
