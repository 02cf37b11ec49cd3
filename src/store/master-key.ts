import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import { DataKeys, LocalKeyWrapper, parseMasterKey } from './encryption.ts';

export interface EncryptionSettings {
  mode: 'on' | 'off';
  /** Base64 of 32 bytes (FHIR_MASTER_KEY). */
  masterKey?: string;
  /** A file holding it (FHIR_MASTER_KEY_FILE). */
  masterKeyFile?: string;
  /** Earlier master keys, base64, comma-separated (FHIR_PREVIOUS_MASTER_KEYS): still unwrap keys not yet rotated. */
  previousMasterKeys?: string;
}

/** The configured master key (and earlier ones), when there is one. */
export function keyWrapperFor(settings: Omit<EncryptionSettings, 'mode'> | undefined, names = { key: 'FHIR_MASTER_KEY', file: 'FHIR_MASTER_KEY_FILE' }): LocalKeyWrapper | undefined {
  const previous = (settings?.previousMasterKeys ?? '').split(',').map((key) => key.trim()).filter((key) => key !== '').map((key) => parseMasterKey(key, 'FHIR_PREVIOUS_MASTER_KEYS'));
  if (settings?.masterKey) return new LocalKeyWrapper(parseMasterKey(settings.masterKey, names.key), previous);
  if (settings?.masterKeyFile) return new LocalKeyWrapper(parseMasterKey(readFileSync(settings.masterKeyFile, 'utf8'), `${names.file} (${settings.masterKeyFile})`), previous);
  return undefined;
}

/** Where an embedded store without a configured master key keeps the one it generated: beside its data directory. */
export function generatedMasterKeyFile(dataDir: string): string {
  const full = resolve(dataDir);
  return join(dirname(full), `${basename(full)}.master-key`);
}

/**
 * The data keys of a store opened at `databaseUrl`, or undefined when encryption is off. The master key is
 * FHIR_MASTER_KEY, else FHIR_MASTER_KEY_FILE's content. With neither: an in-memory store uses a key of its
 * own, lost with it; an embedded store on disk generates one into `<data directory>.master-key` (and `warn`s:
 * whoever copies both has the data); a PostgreSQL store refuses to start, since its data lives elsewhere.
 */
export function dataKeysFor(settings: EncryptionSettings | undefined, databaseUrl: string, warn: (message: string) => void): DataKeys | undefined {
  const wrapper = keyWrapperFor(settings);
  if (settings?.mode === 'off') return undefined;
  if (wrapper) return new DataKeys(wrapper);
  if (/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new Error('Encryption at rest needs a master key: set FHIR_MASTER_KEY (openssl rand -base64 32) or FHIR_MASTER_KEY_FILE, or FHIR_ENCRYPTION=off');
  }
  if (databaseUrl === '' || databaseUrl.startsWith('memory://')) return new DataKeys(new LocalKeyWrapper(randomBytes(32)));
  const file = generatedMasterKeyFile(databaseUrl);
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
    warn(`No master key configured (FHIR_MASTER_KEY, FHIR_MASTER_KEY_FILE): generated ${file}. It sits beside the data it protects: move it out (and point FHIR_MASTER_KEY_FILE at it) before this store holds real patients' data.`);
  } else {
    warn(`No master key configured: using ${file}, beside the data it protects (see README, Encryption at rest).`);
  }
  return new DataKeys(new LocalKeyWrapper(parseMasterKey(readFileSync(file, 'utf8'), file)));
}
