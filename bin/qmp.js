#!/usr/bin/env node
// The `qmp` command's launcher: runs the compiled CLI.
import { main } from "../dist/src/cli/main.js";

process.exitCode = await main(process.argv.slice(2));
