// A multiple-choice test in the candidate's room: the questions come from the room's
// metadata (without their answers); each choice is saved as it is made, into the document's
// `answers` map (question id to the chosen indexes), so a reload or a lost connection keeps
// them and the recording holds every change of mind.

import { h } from './ui.js'

export class McqView {
  constructor (el, doc, questions) {
    this.answers = doc.getMap('answers')
    this.inputs = []
    this.readOnly = false
    el.replaceChildren(h('ol', { id: 'mcq', class: 'mcq' }, questions.map((q) => {
      const type = q.multiple ? 'checkbox' : 'radio'
      return h('li', { class: 'question', 'data-question': q.id },
        h('p', { class: 'question-text' }, q.prompt),
        q.multiple ? h('p', { class: 'hint' }, 'Choose all that apply.') : null,
        q.choices.map((choice, index) => {
          const input = h('input', { type, name: `q-${q.id}`, value: index,
            onchange: () => this._save(q) })
          this.inputs.push({ question: q.id, index, input })
          return h('label', { class: 'choice' }, input, ' ', choice)
        }))
    })))
    this.answers.observe(() => this._show())
    this._show()
  }

  setReadOnly (readOnly) {
    this.readOnly = readOnly
    for (const { input } of this.inputs) input.disabled = readOnly
  }

  _save (question) {
    if (this.readOnly) return
    const chosen = this.inputs
      .filter((i) => i.question === question.id && i.input.checked)
      .map((i) => i.index)
    this.answers.set(question.id, chosen)
  }

  _show () {
    for (const { question, index, input } of this.inputs) {
      const chosen = this.answers.get(question)
      input.checked = Array.isArray(chosen) && chosen.includes(index)
    }
  }
}
