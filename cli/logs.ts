/** Where the CLI shows what the functions log: stderr, each line prefixed with the function. */
export function printFunctionLog(functionName: string, text: string): void {
  for (const line of text.trimEnd().split('\n'))
    process.stderr.write(`[${functionName}] ${line}\n`);
}
