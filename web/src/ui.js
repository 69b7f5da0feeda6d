// Small DOM helpers shared by the panels of the room page.

/**
 * Create an element: h('button', { class: 'x', onclick }, 'text', child).
 * Attributes starting with "on" become listeners; text children are always text nodes,
 * never parsed as HTML.
 */
export function h (tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value)
    else if (value === true) el.setAttribute(key, '')
    else el.setAttribute(key, String(value))
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue
    el.append(child instanceof Node ? child : document.createTextNode(String(child)))
  }
  return el
}

let toasts = null

/** Show a short message in the corner; errors stay longer. */
export function toast (message, kind = 'info') {
  if (toasts === null || !toasts.isConnected) {
    toasts = h('div', { id: 'toasts', role: 'status', 'aria-live': 'polite' })
    document.body.append(toasts)
  }
  const el = h('div', { class: `toast ${kind}` }, message)
  toasts.append(el)
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000)
}

/**
 * Replace the whole page with a message that says what went wrong and what to do.
 * Used when the server closes for good: expired link, room gone, removed from the room.
 */
export function fatal (title, detail, advice) {
  document.body.replaceChildren(
    h('main', { id: 'fatal', class: 'fatal' },
      h('h1', {}, title),
      h('p', { class: 'reason' }, detail),
      h('p', {}, advice))
  )
}

/** "m:ss" or "h:mm:ss" for a duration in milliseconds. */
export function clock (ms) {
  const total = Math.max(0, Math.floor(ms / 1000))
  const s = String(total % 60).padStart(2, '0')
  const m = Math.floor(total / 60) % 60
  const hours = Math.floor(total / 3600)
  return hours > 0 ? `${hours}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`
}

/** An inline text field that resolves with the entered value, or null when cancelled. */
export function askInline (anchor, { value = '', placeholder = '', label }) {
  return new Promise((resolve) => {
    const input = h('input', { class: 'inline-input', value, placeholder, 'aria-label': label })
    let done = false
    const finish = (result) => {
      if (done) return
      done = true
      input.remove()
      resolve(result)
    }
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') finish(input.value.trim() || null)
      else if (e.key === 'Escape') finish(null)
    })
    input.addEventListener('blur', () => finish(input.value.trim() || null))
    anchor.after(input)
    input.focus()
    input.select()
  })
}
