/** Runs by-field with `mod` over the file `argv` names, prints its result and exits. */
export function runByField(mod: object, argv: string[], options?: object): Promise<never>;
