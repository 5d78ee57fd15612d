// types/openapi.d.ts is generated from infra/openapi.yaml and committed (so the dev command and editors have the
// types without installing the generator): this fails when it is stale. Regenerate with `npm run types`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const DASHBOARD = resolve(dirname(fileURLToPath(import.meta.url)), '..');

test('types/openapi.d.ts is what openapi-typescript generates from infra/openapi.yaml today', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'openapi-types-'));
  try {
    const fresh = join(dir, 'openapi.d.ts');
    await promisify(execFile)(process.execPath, [join(DASHBOARD, 'node_modules/openapi-typescript/bin/cli.js'), join(DASHBOARD, '../infra/openapi.yaml'), '-o', fresh]);
    const committed = readFileSync(join(DASHBOARD, 'types/openapi.d.ts'), 'utf8');
    assert.ok(readFileSync(fresh, 'utf8') === committed, 'types/openapi.d.ts is stale: run `npm --prefix dashboard run types` and commit it');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
