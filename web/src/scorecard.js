// The reviewer's rubric scorecard in the replay page: the hidden tests' results, the automatic
// pre-fill and the model reviewer's proposal (each labelled as what it is), a form scoring each
// criterion 1 to 4 with notes, and the scorecards already filled.

import { h } from './ui.js'

const LEVELS = { 1: 'weak', 2: 'mixed', 3: 'good', 4: 'excellent' }

export class ScorecardPanel {
  /** api: the replay page's ReviewApi (get/post relative to the room). */
  constructor (api) {
    this.api = api
    this.el = h('div', { id: 'scorecard', class: 'scorecard' }, 'Loading…')
  }

  async show () {
    let card
    try {
      card = await this.api.get('scorecard')
    } catch (error) {
      this.el.replaceChildren(h('p', { class: 'error' }, error.message))
      return
    }
    this.el.replaceChildren(
      this._tests(card.hidden_tests),
      this._proposal('prefill', card.prefill),
      card.model_review ? this._proposal('model-review', card.model_review) : null,
      this._form(card.criteria, card.prefill.scores),
      this._filled(card.scorecards))
  }

  _tests (tests) {
    if (!tests) return null
    return h('details', { class: 'hidden-tests' },
      h('summary', {}, `Hidden tests: ${tests.passed} of ${tests.total} passed`),
      h('ul', {}, tests.tests.map((t) => h('li', { class: t.passed ? 'passed' : 'failed' },
        `${t.passed ? 'passed' : 'failed'} ${t.name}`, t.error ? h('pre', {}, t.error) : null))))
  }

  _proposal (id, proposal) {
    if (proposal.error) return h('p', { id, class: 'proposal error' }, proposal.error)
    const scores = Object.entries(proposal.scores)
      .filter(([, score]) => score !== null)
      .map(([criterion, score]) => `${criterion} ${score}`)
    return h('div', { id, class: 'proposal' },
      h('p', { class: 'label' }, proposal.label),
      h('p', {}, scores.length ? scores.join(' · ') : 'No criterion can be scored automatically.'),
      (proposal.reasons ?? []).length ? h('ul', {}, proposal.reasons.map((r) => h('li', {}, r))) : null,
      proposal.notes ? h('p', { class: 'notes' }, proposal.notes) : null)
  }

  _form (criteria, proposed) {
    const rows = criteria.map((c) => h('fieldset', { class: 'criterion', 'data-criterion': c.id },
      h('legend', {}, c.description),
      [1, 2, 3, 4].map((n) => h('label', {},
        h('input', { type: 'radio', name: c.id, value: n, required: true,
          checked: proposed[c.id] === n }),
        ` ${n} ${LEVELS[n]}`))))
    const notes = h('textarea', { name: 'notes', id: 'scorecard-notes', rows: 3, maxlength: 5000,
      placeholder: 'What you saw, with times' })
    const status = h('p', { class: 'status', role: 'status' })
    const form = h('form', { id: 'scorecard-form' }, rows, notes,
      h('button', { type: 'submit', class: 'primary' }, 'Submit scorecard'), status)
    form.addEventListener('submit', async (event) => {
      event.preventDefault()
      const data = new FormData(form)
      const scores = Object.fromEntries(criteria.map((c) => [c.id, Number(data.get(c.id))]))
      try {
        await this.api.post('scorecard', { scores, notes: String(data.get('notes') ?? '') })
      } catch (error) {
        status.textContent = error.message
        return
      }
      await this.show()
    })
    return form
  }

  _filled (scorecards) {
    if (!scorecards.length) return null
    return h('ul', { id: 'scorecards', class: 'filled' }, scorecards.map((s) => h('li', {},
      h('strong', {}, `${s.name ?? s.by} `),
      Object.entries(s.scores).map(([criterion, score]) => `${criterion} ${score}`).join(' · '),
      s.notes ? h('p', {}, s.notes) : null)))
  }
}
