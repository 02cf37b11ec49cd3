// Runs the tap suite, passes its TAP output through, and closes with the line CI reads:
// `N passed, N failed`, counting each test case (a `t.test` in a test file) once.
// A test file that fails outside any test case (a crash at load) counts as one failed case.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const child = spawn('npx', ['tap', '--reporter=tap', ...process.argv.slice(2)], { stdio: ['ignore', 'pipe', 'inherit'] });
let passed = 0;
let failed = 0;
let failedInFile = 0;
const lines = createInterface({ input: child.stdout });
lines.on('line', (line) => {
  process.stdout.write(`${line}\n`);
  const caseResult = line.match(/^ {4}(not ok|ok) \d+/);
  if (caseResult) {
    if (caseResult[1] === 'ok') passed++;
    else {
      failed++;
      failedInFile++;
    }
    return;
  }
  const fileResult = line.match(/^(not ok|ok) \d+/);
  if (fileResult) {
    if (fileResult[1] === 'not ok' && failedInFile === 0) failed++;
    failedInFile = 0;
  }
});
child.on('close', (code) => {
  lines.close();
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(code ?? 1);
});
