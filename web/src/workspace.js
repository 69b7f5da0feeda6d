// The workspace: file tabs over the room's `files` map and one CodeMirror editor bound to the
// open file's Y.Text, with everyone's cursors from awareness.

import * as Y from 'yjs'
import { basicSetup } from 'codemirror'
import { EditorView, keymap } from '@codemirror/view'
import { Compartment, EditorState, Prec } from '@codemirror/state'
import { indentWithTab } from '@codemirror/commands'
import { StreamLanguage, indentUnit } from '@codemirror/language'
import { python } from '@codemirror/lang-python'
import { shell } from '@codemirror/legacy-modes/mode/shell'
import { javascript, json, typescript } from '@codemirror/legacy-modes/mode/javascript'
import { go } from '@codemirror/legacy-modes/mode/go'
import { c, cpp, java } from '@codemirror/legacy-modes/mode/clike'
import { sql } from '@codemirror/legacy-modes/mode/sql'
import { yaml } from '@codemirror/legacy-modes/mode/yaml'
import { yCollab } from 'y-codemirror.next'
import { h, askInline, toast } from './ui.js'

const MAX_NAME = 120
const LEGACY_MODES = {
  sh: shell, bash: shell, js: javascript, mjs: javascript, ts: typescript, json,
  go, c, h: c, cpp: cpp, cc: cpp, hpp: cpp, java, sql: sql({}), yml: yaml, yaml
}

/** Syntax highlighting for a file, chosen by its extension. */
export function languageFor (name) {
  const ext = name.includes('.') ? name.split('.').pop().toLowerCase() : ''
  if (ext === 'py') return python()
  const mode = LEGACY_MODES[ext]
  return mode ? StreamLanguage.define(mode) : []
}

/** Why a file name cannot be used, or null when it can (the same rules as the HTTP API). */
export function badFileName (name, files) {
  const parts = name.split('/')
  if (!name || name.length > MAX_NAME || name.startsWith('/') || parts.includes('..') ||
      parts.includes('')) return `"${name}" is not a relative file path`
  if (files.has(name)) return `there is already a file named "${name}"`
  return null
}

/** The new name of `name` when `event` renamed it (one file deleted, one added), else null. */
function renamedTo (event, name) {
  if (!event || event.keys.get(name)?.action !== 'delete') return null
  const added = Array.from(event.keys).filter(([, change]) => change.action === 'add')
  return added.length === 1 ? added[0][0] : null
}

export class Workspace {
  /**
   * @param {object} opts
   * @param {Y.Doc} opts.doc the room document
   * @param {import('y-protocols/awareness').Awareness} opts.awareness
   * @param {HTMLElement} opts.tabs where the file tabs go
   * @param {HTMLElement} opts.editor where the editor goes
   * @param {boolean} opts.canEdit whether this role may ever edit
   * @param {(code: string|null) => void} opts.onRun Ctrl/Cmd+Enter: the selection, or null
   * @param {object} [opts.extension] more editor behaviour (the candidate's signal reporter)
   */
  constructor ({ doc, awareness, tabs, editor, canEdit, onRun, extension = [] }) {
    this.doc = doc
    this.files = doc.getMap('files')
    this.meta = doc.getMap('meta')
    this.awareness = awareness
    this.tabsEl = tabs
    this.editorEl = editor
    this.canEdit = canEdit
    this.readOnly = !canEdit
    this.onRun = onRun
    this.extension = extension
    this.current = null
    this.bound = null
    this.view = null
    this.readOnlyCompartment = new Compartment()
    this.tabEls = new Map()
    this.addButton = h('button', { class: 'tab-add', title: 'New file', 'aria-label': 'New file',
      onclick: (e) => this._add(e.currentTarget) }, '+')
    this.files.observe((event) => this._filesChanged(event))
  }

  /** Called once the document has synced: open the entry file and draw the tabs. */
  start () {
    this._filesChanged()
  }

  /** Lock or unlock the editor and the file actions (after the round ends, for candidates). */
  setReadOnly (readOnly) {
    this.readOnly = readOnly || !this.canEdit
    this.view?.dispatch({
      effects: this.readOnlyCompartment.reconfigure(this._readOnlyExtension())
    })
    this.editorEl.classList.toggle('read-only', this.readOnly)
    this._drawTabs()
  }

  /** The open file's name and the selected text ('' when nothing is selected). */
  selection () {
    if (!this.view) return { file: this.current, code: '' }
    const { from, to } = this.view.state.selection.main
    return { file: this.current, code: this.view.state.sliceDoc(from, to) }
  }

  open (name) {
    const ytext = this.files.get(name)
    if (!(ytext instanceof Y.Text)) return
    this.current = name
    this.bound = ytext
    this.view?.destroy()
    this.undoManager?.destroy()
    this.undoManager = new Y.UndoManager(ytext)
    this.editorEl.replaceChildren()
    const state = EditorState.create({
      doc: ytext.toString(),
      extensions: [
        basicSetup,
        indentUnit.of('    '),
        languageFor(name),
        Prec.high(keymap.of([
          { key: 'Mod-Enter', run: () => { this._runShortcut(); return true } },
          indentWithTab
        ])),
        this.readOnlyCompartment.of(this._readOnlyExtension()),
        yCollab(ytext, this.awareness, { undoManager: this.undoManager }),
        EditorView.contentAttributes.of({ 'aria-label': `Editor: ${name}` }),
        this.extension
      ]
    })
    this.view = new EditorView({ state, parent: this.editorEl })
    this.awareness.setLocalStateField('file', name)
    this._drawTabs()
  }

  _readOnlyExtension () {
    return this.readOnly ? [EditorState.readOnly.of(true)] : []
  }

  _runShortcut () {
    const { code } = this.selection()
    this.onRun(code ? code : null)
  }

  _filesChanged (event) {
    // Reopen when the open file was deleted, renamed, or replaced by someone else's.
    if (this.current === null || this.files.get(this.current) !== this.bound) {
      const names = this._names()
      const entry = this.meta.get('entry')
      const next = this.files.has(this.current) ? this.current
        : (renamedTo(event, this.current) ?? (names.includes(entry) ? entry : names[0]))
      if (next !== undefined) this.open(next)
      else this._empty()
    }
    this._drawTabs()
  }

  _names () {
    return Array.from(this.files.keys()).sort()
  }

  _empty () {
    this.view?.destroy()
    this.view = null
    this.current = null
    this.bound = null
    this.editorEl.replaceChildren(h('p', { class: 'empty' },
      this.readOnly ? 'This room has no files.' : 'No files yet: add one with +.'))
  }

  _drawTabs () {
    // Tabs are kept, not redrawn, so that a double-click (rename) survives the first click
    // opening the file.
    const names = this._names()
    for (const [name, tab] of this.tabEls) {
      if (!this.files.has(name) || tab.readOnly !== this.readOnly) this.tabEls.delete(name)
    }
    const tabs = names.map((name) => {
      let tab = this.tabEls.get(name)
      if (!tab) {
        tab = { el: this._tab(name), readOnly: this.readOnly }
        this.tabEls.set(name, tab)
      }
      const active = name === this.current
      tab.el.classList.toggle('active', active)
      tab.el.setAttribute('aria-selected', String(active))
      return tab.el
    })
    if (!this.readOnly) tabs.push(this.addButton)
    const shown = Array.from(this.tabsEl.children)
    const naming = this.tabsEl.querySelector('.inline-input') // redrawn once the name is given
    if (!naming && (shown.length !== tabs.length || shown.some((el, i) => el !== tabs[i]))) {
      this.tabsEl.replaceChildren(...tabs)
    }
  }

  _tab (name) {
    const tab = h('div', { class: 'tab', role: 'tab', 'data-file': name })
    tab.append(h('button', {
      class: 'tab-name',
      title: this.readOnly ? name : `${name} (double-click to rename)`,
      onclick: () => { if (name !== this.current) this.open(name) },
      ondblclick: () => { if (!this.readOnly) this._rename(name, tab) }
    }, name))
    if (!this.readOnly) {
      tab.append(h('button', { class: 'tab-close', title: `Delete ${name}`,
        'aria-label': `Delete ${name}`, onclick: () => this._delete(name) }, '×'))
    }
    return tab
  }

  async _add (anchor) {
    const name = await askInline(anchor, { placeholder: 'name.py', label: 'New file name' })
    this._drawTabs()
    if (name === null) return
    const problem = badFileName(name, this.files)
    if (problem) { toast(problem, 'error'); return }
    this.files.set(name, new Y.Text())
    this.open(name)
  }

  async _rename (name, tab) {
    const next = await askInline(tab, { value: name, label: `Rename ${name}` })
    this._drawTabs()
    if (next === null || next === name) return
    const problem = badFileName(next, this.files)
    if (problem) { toast(problem, 'error'); return }
    const text = this.files.get(name)
    if (!(text instanceof Y.Text)) return
    this.doc.transact(() => {
      this.files.set(next, new Y.Text(text.toString()))
      this.files.delete(name)
    }) // the files observer follows the open file to its new name
  }

  _delete (name) {
    if (!window.confirm(`Delete ${name} for everyone in the room?`)) return
    this.files.delete(name)
  }
}
