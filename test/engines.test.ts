import { readFileSync } from 'node:fs';
import semver from 'semver';
import t from 'tap';

/**
 * `npm install` warns EBADENGINE for every installed package whose `engines.node` excludes the running
 * Node. The project declares the Node versions it runs on; each of them, its lowest and the one running
 * these tests, must be one every locked package (dev ones included: npm installs them too) accepts.
 */
const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(new URL('../package-lock.json', import.meta.url), 'utf8')) as {
  packages: Record<string, { version?: string; engines?: { node?: string } | string[] }>;
};

function refusing(node: string): string[] {
  return Object.entries(lock.packages)
    .filter(([path]) => path !== '')
    .flatMap(([path, entry]) => {
      const range = Array.isArray(entry.engines) ? undefined : entry.engines?.node;
      return range && !semver.satisfies(node, range) ? [`${path.replace(/^.*node_modules\//, '')}@${entry.version} wants node ${range}`] : [];
    });
}

t.test('the Node versions the project declares are ones it runs on', async (t) => {
  t.ok(semver.satisfies(process.version, manifest.engines.node), `running ${process.version}, declared ${manifest.engines.node}`);
  t.ok(semver.satisfies('20.20.0', manifest.engines.node), 'Node 20, the one the project runs on, is declared');
});

t.test('every locked package accepts the lowest declared Node and the running one (no EBADENGINE)', async (t) => {
  const lowest = semver.minVersion(manifest.engines.node)!.version;
  t.same(refusing(lowest), [], `packages refusing Node ${lowest}, the lowest package.json declares`);
  t.same(refusing(process.version), [], `packages refusing Node ${process.version}, the one running`);
});
