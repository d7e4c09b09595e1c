/** `npm run fanout -- …`: the CLI run directly by tsx. */
import { main } from './main.ts';

process.exitCode = await main(process.argv.slice(2));
