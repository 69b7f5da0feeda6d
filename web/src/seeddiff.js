// "Changes since the take-home": in a live follow-up seeded from a candidate's take-home, the
// difference between the code as it was submitted and the code now, file by file.

import { createTwoFilesPatch } from 'diff'
import { h } from './ui.js'

/** A unified diff per file between `before` and `after` ({name: text}); unchanged files are
 * left out. */
export function fileDiffs (before, after) {
  const names = Array.from(new Set([...Object.keys(before), ...Object.keys(after)])).sort()
  const diffs = {}
  for (const name of names) {
    const old = before[name]
    const now = after[name]
    if (old === now) continue
    diffs[name] = createTwoFilesPatch(old === undefined ? '/dev/null' : `a/${name}`,
      now === undefined ? '/dev/null' : `b/${name}`, old ?? '', now ?? '', 'submitted', 'now')
  }
  return diffs
}

/** The diffs as coloured blocks (shared with the replay page's view of the same thing). */
export function diffView (diffs) {
  const names = Object.keys(diffs)
  if (!names.length) return h('p', { class: 'empty' }, 'No changes since the take-home was submitted.')
  return h('div', { class: 'seed-diff' }, names.map((name) => h('pre', { class: 'diff', 'data-file': name },
    diffs[name].split('\n').map((line) => h('span', {
      class: line.startsWith('+') && !line.startsWith('+++') ? 'add'
        : line.startsWith('-') && !line.startsWith('---') ? 'del' : ''
    }, `${line}\n`)))))
}
