import { readFileSync } from 'node:fs';
import * as path from 'node:path';

/** Real sentences of mixed length from the demo STS data (news, captions, forum posts): the benches' shared input. */
export function loadDemoTexts(n: number, root = path.resolve(__dirname, '..')): string[] {
  const seen = new Set<string>();
  for (const line of readFileSync(path.join(root, '.demo/data/sts.jsonl'), 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const row = JSON.parse(line) as Record<string, unknown>;
    for (const key of ['sentence1', 'sentence2']) if (typeof row[key] === 'string' && row[key]) seen.add(row[key] as string);
    if (seen.size >= n) break;
  }
  return [...seen].slice(0, n);
}
