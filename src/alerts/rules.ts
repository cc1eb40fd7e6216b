// The rules file of `strata archive serve --rules FILE` (docs/snapshots.md):
// which alerts are conditions that take a snapshot, which volume an alert
// concerns, how often, how many to keep; and schedules. YAML, read with the
// `yaml` package; every mistake is reported with the file's line and column,
// and a file with any mistake is refused as a whole (the server does not
// start), so a typo never silently disables a condition.
//
//   conditions:
//     - name: disk-errors                 # required: 1-64 of a-z 0-9 . _ -
//       match: { alertname: DiskErrors }  # label = value, all must hold
//       match-regex: { instance: 'web-.*' }  # label =~ regex (anchored), all must hold
//       severity: [critical, warning]     # label `severity` is one of these
//       volume-label: volume              # the label naming the volume (default: volume)
//       volumes: { "web1:9100": web1 }    # label value -> volume (default: the value is the volume name)
//       min-interval: 10m                 # one snapshot per volume per interval (default 10m)
//       keep: 10                          # complete snapshots kept per volume (default 10)
//       max-age: 30d                      # and none older than this (default: no limit)
//   schedules:
//     - every: 24h                        # required
//       keep: 7                           # default 7
//       volumes: [web1]                   # default: every volume of the archive
//
// Conditions are tried in file order; the first that matches decides.
import { readFileSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node, type Pair, type YAMLMap } from 'yaml';
import { badVolumeNameReason } from '../protocol/images.js';

export interface Condition {
  name: string;
  /** Label equalities, all required. */
  match: { [label: string]: string };
  /** Label regexes (source text, anchored when compiled), all required. */
  matchRegex: { [label: string]: string };
  /** Allowed values of the `severity` label; null: any. */
  severity: string[] | null;
  volumeLabel: string;
  /** Label value -> volume name; null: the label's value is the volume's name. */
  volumes: { [value: string]: string } | null;
  minIntervalMs: number;
  keep: number;
  maxAgeMs: number | null;
}

export interface Schedule {
  name: string;
  everyMs: number;
  keep: number;
  /** null: every volume. */
  volumes: string[] | null;
}

export interface Rules {
  conditions: Condition[];
  schedules: Schedule[];
}

export const EMPTY_RULES: Rules = { conditions: [], schedules: [] };

export const DEFAULT_MIN_INTERVAL_MS = 10 * 60_000;
export const DEFAULT_CONDITION_KEEP = 10;
export const DEFAULT_SCHEDULE_KEEP = 7;
/** Shortest schedule interval and min-interval accepted (a typo like `every: 1s` would flood the targets). */
const MIN_EVERY_MS = 60_000;
const MAX_RULES_BYTES = 1024 * 1024;

export class RulesError extends Error {
  constructor(readonly file: string, readonly problems: string[]) {
    super(`${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'} in the rules:\n  ${problems.join('\n  ')}`);
    this.name = 'RulesError';
  }
}

const UNITS: { [u: string]: number } = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** "90s", "10m", "24h", "7d", "2w", or combined ("1h30m"). */
export function parseDuration(v: string): number | null {
  const s = v.trim();
  if (!/^(\d+(\.\d+)?[smhdw])+$/.test(s)) return null;
  let ms = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)([smhdw])/g)) ms += Number(m[1]) * UNITS[m[2]!]!;
  return Number.isFinite(ms) && ms > 0 ? Math.round(ms) : null;
}

export function formatDuration(ms: number): string {
  for (const [u, n] of [['w', UNITS.w!], ['d', UNITS.d!], ['h', UNITS.h!], ['m', UNITS.m!]] as const) if (ms % n === 0) return `${ms / n}${u}`;
  return `${ms / 1000}s`;
}

export function loadRules(file: string): Rules {
  let text: string;
  try {
    const buf = readFileSync(file);
    if (buf.length > MAX_RULES_BYTES) throw new Error(`larger than ${MAX_RULES_BYTES} bytes`);
    text = buf.toString('utf8');
  } catch (err) {
    throw new RulesError(file, [`cannot read: ${(err as Error).message}`]);
  }
  return parseRules(text, file);
}

/** Parses and checks a rules file's text; throws RulesError naming every problem with its line. */
export function parseRules(text: string, file = 'rules'): Rules {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const problems: string[] = [];
  const at = (node: Node | null | undefined): string => {
    const off = node?.range?.[0];
    if (off === undefined) return 'line ?';
    const p = lc.linePos(off);
    return `line ${p.line}, column ${p.col}`;
  };
  for (const e of doc.errors) {
    const p = lc.linePos(e.pos[0]);
    problems.push(`line ${p.line}, column ${p.col}: YAML: ${e.message.split('\n')[0]}`);
  }
  if (problems.length > 0) throw new RulesError(file, problems);
  const rules: Rules = { conditions: [], schedules: [] };
  const root = doc.contents;
  if (root === null || root === undefined) return rules; // an empty file: no conditions, no schedules
  if (!isMap(root)) throw new RulesError(file, [`${at(root)}: the rules must be a mapping with "conditions" and/or "schedules"`]);
  const bad = (node: Node | null | undefined, msg: string): void => { problems.push(`${at(node)}: ${msg}`); };

  for (const pair of (root as YAMLMap).items as Pair<Node, Node>[]) {
    const key = scalarString(pair.key);
    if (key === 'conditions') {
      const seq = pair.value;
      if (!isSeq(seq)) { bad(seq ?? pair.key, '"conditions" must be a list'); continue; }
      seq.items.forEach((item, i) => {
        const c = readCondition(item as Node, `conditions[${i}]`, bad);
        if (c !== null) rules.conditions.push(c);
      });
    } else if (key === 'schedules') {
      const seq = pair.value;
      if (!isSeq(seq)) { bad(seq ?? pair.key, '"schedules" must be a list'); continue; }
      seq.items.forEach((item, i) => {
        const s = readSchedule(item as Node, `schedules[${i}]`, bad);
        if (s !== null) rules.schedules.push(s);
      });
    } else {
      bad(pair.key, `unknown key ${JSON.stringify(key)} (expected "conditions" or "schedules")`);
    }
  }
  const seen = new Set<string>();
  for (const c of rules.conditions) {
    if (seen.has(c.name)) problems.push(`condition ${JSON.stringify(c.name)} is defined twice`);
    seen.add(c.name);
  }
  const seenS = new Set<string>();
  for (const s of rules.schedules) {
    if (seenS.has(s.name)) problems.push(`schedule ${JSON.stringify(s.name)} is defined twice (give each a "name")`);
    seenS.add(s.name);
  }
  if (problems.length > 0) throw new RulesError(file, problems);
  return rules;
}

type Bad = (node: Node | null | undefined, msg: string) => void;

const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function scalarString(node: unknown): string | null {
  if (!isScalar(node)) return null;
  const v = node.value;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return null;
}

function entries(node: Node, what: string, bad: Bad): [string, Node, Pair<Node, Node>][] | null {
  if (!isMap(node)) { bad(node, `${what} must be a mapping`); return null; }
  const out: [string, Node, Pair<Node, Node>][] = [];
  for (const p of node.items as Pair<Node, Node>[]) {
    const k = scalarString(p.key);
    if (k === null) { bad(p.key, `${what}: keys must be plain strings`); continue; }
    out.push([k, p.value as Node, p]);
  }
  return out;
}

function stringMap(node: Node, what: string, bad: Bad, check: (k: string, v: string, n: Node) => boolean): { [k: string]: string } | null {
  const es = entries(node, what, bad);
  if (es === null) return null;
  const out: { [k: string]: string } = {};
  let ok = true;
  for (const [k, v, p] of es) {
    const s = scalarString(v);
    if (s === null) { bad(v ?? p.key, `${what}.${k} must be a string`); ok = false; continue; }
    if (!check(k, s, v ?? p.key)) { ok = false; continue; }
    out[k] = s;
  }
  return ok ? out : null;
}

function positiveInt(node: Node, what: string, bad: Bad): number | null {
  const v = isScalar(node) ? node.value : undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 100_000) { bad(node, `${what} must be a whole number from 1 to 100000`); return null; }
  return v;
}

function duration(node: Node, what: string, bad: Bad, min: number): number | null {
  const s = scalarString(node);
  const ms = s === null ? null : parseDuration(s);
  if (ms === null) { bad(node, `${what} must be a duration like 90s, 10m, 24h, 7d`); return null; }
  if (ms < min) { bad(node, `${what} must be at least ${formatDuration(min)}`); return null; }
  return ms;
}

function readCondition(node: Node, what: string, bad: Bad): Condition | null {
  const es = entries(node, what, bad);
  if (es === null) return null;
  const c: Condition = {
    name: '', match: {}, matchRegex: {}, severity: null, volumeLabel: 'volume', volumes: null,
    minIntervalMs: DEFAULT_MIN_INTERVAL_MS, keep: DEFAULT_CONDITION_KEEP, maxAgeMs: null,
  };
  let ok = true;
  let named = false;
  const fail = (n: Node | null | undefined, msg: string): void => { bad(n, msg); ok = false; };
  for (const [k, v, p] of es) {
    const where = `${what}.${k}`;
    switch (k) {
      case 'name': {
        const s = scalarString(v);
        if (s === null || !NAME_RE.test(s)) fail(v ?? p.key, `${where} must be 1-64 of a-z 0-9 . _ - (starting with a letter or digit)`);
        else { c.name = s; named = true; }
        break;
      }
      case 'match': {
        const m = stringMap(v, where, bad, (label, _val, n) => LABEL_RE.test(label) || (bad(n, `${where}: ${JSON.stringify(label)} is not a label name`), false));
        if (m === null) ok = false; else c.match = m;
        break;
      }
      case 'match-regex': {
        const m = stringMap(v, where, bad, (label, re, n) => {
          if (!LABEL_RE.test(label)) { bad(n, `${where}: ${JSON.stringify(label)} is not a label name`); return false; }
          try { new RegExp(`^(?:${re})$`); return true; } catch (err) { bad(n, `${where}.${label}: bad regex: ${(err as Error).message}`); return false; }
        });
        if (m === null) ok = false; else c.matchRegex = m;
        break;
      }
      case 'severity': {
        const list = isSeq(v) ? v.items.map((x) => scalarString(x)) : [scalarString(v)];
        if (list.length === 0 || list.some((x) => x === null || x === '')) fail(v ?? p.key, `${where} must be a severity or a list of them`);
        else c.severity = list as string[];
        break;
      }
      case 'volume-label': {
        const s = scalarString(v);
        if (s === null || !LABEL_RE.test(s)) fail(v ?? p.key, `${where} must be a label name`);
        else c.volumeLabel = s;
        break;
      }
      case 'volumes': {
        const m = stringMap(v, where, bad, (_val, vol, n) => {
          const why = badVolumeNameReason(vol);
          if (why !== null) { bad(n, `${where}: ${why}`); return false; }
          return true;
        });
        if (m === null) ok = false; else c.volumes = m;
        break;
      }
      case 'min-interval': {
        const ms = duration(v, where, bad, MIN_EVERY_MS);
        if (ms === null) ok = false; else c.minIntervalMs = ms;
        break;
      }
      case 'keep': {
        const n = positiveInt(v, where, bad);
        if (n === null) ok = false; else c.keep = n;
        break;
      }
      case 'max-age': {
        const ms = duration(v, where, bad, MIN_EVERY_MS);
        if (ms === null) ok = false; else c.maxAgeMs = ms;
        break;
      }
      default:
        fail(p.key, `${what}: unknown key ${JSON.stringify(k)} (name, match, match-regex, severity, volume-label, volumes, min-interval, keep, max-age)`);
    }
  }
  if (!named) fail(node, `${what} has no "name"`);
  if (ok && Object.keys(c.match).length === 0 && Object.keys(c.matchRegex).length === 0 && c.severity === null) {
    fail(node, `${what} (${c.name}) matches nothing: give it "match", "match-regex" or "severity"`);
  }
  return ok ? c : null;
}

function readSchedule(node: Node, what: string, bad: Bad): Schedule | null {
  const es = entries(node, what, bad);
  if (es === null) return null;
  let ok = true;
  const fail = (n: Node | null | undefined, msg: string): void => { bad(n, msg); ok = false; };
  let everyMs: number | null = null;
  let name: string | null = null;
  const s: Schedule = { name: '', everyMs: 0, keep: DEFAULT_SCHEDULE_KEEP, volumes: null };
  for (const [k, v, p] of es) {
    const where = `${what}.${k}`;
    switch (k) {
      case 'every': everyMs = duration(v, where, bad, MIN_EVERY_MS); if (everyMs === null) ok = false; break;
      case 'keep': { const n = positiveInt(v, where, bad); if (n === null) ok = false; else s.keep = n; break; }
      case 'name': {
        const x = scalarString(v);
        if (x === null || !NAME_RE.test(x)) fail(v ?? p.key, `${where} must be 1-64 of a-z 0-9 . _ -`);
        else name = x;
        break;
      }
      case 'volumes': {
        if (!isSeq(v)) { fail(v ?? p.key, `${where} must be a list of volume names`); break; }
        const vols: string[] = [];
        for (const item of v.items) {
          const x = scalarString(item);
          const why = badVolumeNameReason(x);
          if (why !== null) fail(item as Node, `${where}: ${why}`);
          else vols.push(x!);
        }
        s.volumes = vols;
        break;
      }
      default:
        fail(p.key, `${what}: unknown key ${JSON.stringify(k)} (every, keep, volumes, name)`);
    }
  }
  if (everyMs === null) {
    if (ok) fail(node, `${what} has no "every"`);
    return null;
  }
  s.everyMs = everyMs;
  s.name = name ?? `every-${formatDuration(everyMs)}`;
  return ok ? s : null;
}

/** Does `c` match these labels? (The volume is found separately.) */
export function conditionMatches(c: Condition, labels: { [name: string]: string }): boolean {
  for (const [k, v] of Object.entries(c.match)) if (labels[k] !== v) return false;
  for (const [k, re] of Object.entries(c.matchRegex)) {
    const v = labels[k];
    if (v === undefined || !new RegExp(`^(?:${re})$`).test(v)) return false;
  }
  if (c.severity !== null && !c.severity.includes(labels.severity ?? '')) return false;
  return true;
}

/** The volume an alert concerns under `c`, or why there is none. */
export function volumeOf(c: Condition, labels: { [name: string]: string }): { volume: string } | { problem: 'no-volume' | 'unknown-volume'; detail: string } {
  const v = labels[c.volumeLabel];
  if (v === undefined || v === '') return { problem: 'no-volume', detail: `the alert has no label "${c.volumeLabel}" (volume-label of condition ${c.name})` };
  if (c.volumes !== null) {
    const mapped = Object.hasOwn(c.volumes, v) ? c.volumes[v] : undefined;
    if (mapped === undefined) return { problem: 'unknown-volume', detail: `${c.volumeLabel}=${JSON.stringify(v)} is not in the volumes map of condition ${c.name}` };
    return { volume: mapped };
  }
  if (badVolumeNameReason(v) !== null) return { problem: 'unknown-volume', detail: `${c.volumeLabel}=${JSON.stringify(v).slice(0, 80)} is not a volume name` };
  return { volume: v };
}
