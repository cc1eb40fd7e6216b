// Scraping `--metrics` endpoints in tests: a free port, a fetch of /metrics,
// and a parser of Prometheus' text exposition format (version 0.0.4): every
// sample line checked against the # TYPE of its family, label values
// unescaped.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Scrape {
  samples: Sample[];
  /** Family name -> counter, gauge, histogram, summary, untyped. */
  types: Map<string, string>;
}

export { freePort } from './archive.js';

export async function scrape(url: string): Promise<Scrape> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`);
  const type = res.headers.get('content-type') ?? '';
  if (!type.startsWith('text/plain') || !type.includes('version=0.0.4')) throw new Error(`GET ${url}: content-type ${type}`);
  return parseExposition(await res.text());
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** Parses the text format; throws on any line it cannot read or a sample of a family without # TYPE. */
export function parseExposition(text: string): Scrape {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) throw new Error(`line ${i + 1}: bad comment: ${line}`);
      if (m[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3]!)) throw new Error(`line ${i + 1}: bad type ${m[3]}`);
        types.set(m[2]!, m[3]!);
      }
      continue;
    }
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    const name = brace >= 0 && brace < space ? line.slice(0, brace) : line.slice(0, space);
    if (!NAME.test(name)) throw new Error(`line ${i + 1}: bad metric name: ${line}`);
    const labels: Record<string, string> = {};
    let rest: string;
    if (brace >= 0 && brace < space) {
      let p = brace + 1;
      while (line[p] !== '}') {
        const eq = line.indexOf('="', p);
        if (eq < 0) throw new Error(`line ${i + 1}: bad labels: ${line}`);
        const key = line.slice(p, eq);
        let value = '';
        let q = eq + 2;
        for (; q < line.length && line[q] !== '"'; q++) {
          if (line[q] === '\\') {
            q++;
            value += line[q] === 'n' ? '\n' : line[q];
          } else {
            value += line[q];
          }
        }
        if (q >= line.length) throw new Error(`line ${i + 1}: unterminated label value: ${line}`);
        labels[key] = value;
        p = q + 1;
        if (line[p] === ',') p++;
      }
      rest = line.slice(p + 1).trim();
    } else {
      rest = line.slice(space + 1).trim();
    }
    const [v] = rest.split(' ');
    const value = v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v);
    if (v === undefined || (Number.isNaN(value) && v !== 'NaN')) throw new Error(`line ${i + 1}: bad value: ${line}`);
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count|total)$/, '');
    if (!types.has(family) && !types.has(name)) throw new Error(`line ${i + 1}: sample of a family without # TYPE: ${line}`);
    samples.push({ name, labels, value });
  }
  return { samples, types };
}

/** The samples of `name` whose labels include `labels`. */
export function series(s: Scrape, name: string, labels: Record<string, string> = {}): Sample[] {
  return s.samples.filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
}

/** Sum of the matching samples' values (0 when none). */
export function total(s: Scrape, name: string, labels: Record<string, string> = {}): number {
  return series(s, name, labels).reduce((a, x) => a + x.value, 0);
}
