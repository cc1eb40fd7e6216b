// Prometheus Alertmanager's webhook payload (webhook_config, version 4), as
// Alertmanager sends it:
//
//   {"version":"4","groupKey":"...","status":"firing","receiver":"strata",
//    "groupLabels":{...},"commonLabels":{...},"commonAnnotations":{...},"externalURL":"...",
//    "alerts":[{"status":"firing","labels":{"alertname":"DiskErrors","volume":"v1",...},
//               "annotations":{...},"startsAt":"...","endsAt":"...","generatorURL":"...","fingerprint":"..."}]}
//
// Checked strictly where strata depends on it (alerts, their status and
// labels), leniently elsewhere (unknown fields are ignored, as Alertmanager
// adds some over time). Anything else is a clear error naming the field.
import type { IncomingAlert } from '../protocol/snapshot-api.js';

export const WEBHOOK_LIMITS = {
  /** A webhook body (Alertmanager's max_alerts defaults to 0 = all; a group is rarely large). */
  maxBodyBytes: 1024 * 1024,
  maxAlerts: 1000,
  maxLabels: 64,
  maxValueBytes: 4096,
} as const;

export class PayloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayloadError';
  }
}

function isObject(v: unknown): v is { [k: string]: unknown } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A label or annotation set: string values only, bounded. */
export function stringMap(v: unknown, what: string): { [k: string]: string } {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) throw new PayloadError(`${what} must be an object of strings`);
  const keys = Object.keys(v);
  if (keys.length > WEBHOOK_LIMITS.maxLabels) throw new PayloadError(`${what} has ${keys.length} entries (at most ${WEBHOOK_LIMITS.maxLabels})`);
  const out: { [k: string]: string } = {};
  for (const k of keys) {
    const x = v[k];
    if (typeof x !== 'string') throw new PayloadError(`${what}.${k.slice(0, 64)} must be a string`);
    if (k.length > 256 || Buffer.byteLength(x) > WEBHOOK_LIMITS.maxValueBytes) throw new PayloadError(`${what}.${k.slice(0, 64)} is too long`);
    out[k] = x;
  }
  return out;
}

/** One alert (of a webhook, or raised by a primary). */
export function parseAlert(v: unknown, what: string): IncomingAlert {
  if (!isObject(v)) throw new PayloadError(`${what} must be an object`);
  const status = v.status;
  if (status !== 'firing' && status !== 'resolved') throw new PayloadError(`${what}.status must be "firing" or "resolved"`);
  const labels = stringMap(v.labels, `${what}.labels`);
  const annotations = stringMap(v.annotations, `${what}.annotations`);
  const a: IncomingAlert = { status, labels, annotations };
  if (typeof v.startsAt === 'string') a.startsAt = v.startsAt.slice(0, 64);
  if (typeof v.fingerprint === 'string') a.fingerprint = v.fingerprint.slice(0, 64);
  return a;
}

/** The alerts of a webhook body. */
export function parseWebhook(body: Buffer): IncomingAlert[] {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new PayloadError(`body is not JSON: ${(err as Error).message.slice(0, 200)}`);
  }
  if (!isObject(v)) throw new PayloadError('body must be a JSON object (Alertmanager webhook payload)');
  if (v.version !== undefined && v.version !== '4') throw new PayloadError(`webhook payload version ${JSON.stringify(v.version).slice(0, 20)}: this endpoint reads version "4"`);
  if (!Array.isArray(v.alerts)) throw new PayloadError('"alerts" must be an array (Alertmanager webhook payload)');
  if (v.alerts.length > WEBHOOK_LIMITS.maxAlerts) throw new PayloadError(`${v.alerts.length} alerts in one body (at most ${WEBHOOK_LIMITS.maxAlerts})`);
  return v.alerts.map((a, i) => parseAlert(a, `alerts[${i}]`));
}
