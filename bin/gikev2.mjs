#!/usr/bin/env node
// Launcher for the gikev2 command. Runs the compiled CLI (dist/, built by
// `npm run build` or on install) when present; otherwise runs the TypeScript
// sources through tsx, so `npx gikev2` works from a fresh checkout too.
import { existsSync } from 'node:fs';
import process from 'node:process';
import { fileURLToPath, pathToFileURL, URL } from 'node:url';

const built = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
let entry;
if (existsSync(built)) {
  entry = pathToFileURL(built).href;
} else {
  const { register } = await import('tsx/esm/api');
  register();
  entry = new URL('../src/cli/main.ts', import.meta.url).href;
}
const { run } = await import(entry);
process.exitCode = await run(process.argv.slice(2));
