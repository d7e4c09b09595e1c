/** `npm run fanout -- …`: the CLI run directly by tsx. */
import { main } from './main.ts';

process.exit(await main(process.argv.slice(2)));
