/**
 * Untrusted text (run and model names, paths, error sentences from run folders and model files) placed in
 * a Markdown tooltip. Every ASCII punctuation character is backslash-escaped, which CommonMark renders as
 * the character itself, so no `[link](…)`, `![image](https://…)`, autolink, emphasis or heading can form; `<`,
 * `>` and `&` become entities so no HTML tag survives even where HTML would be rendered; line breaks become
 * spaces, so a name cannot start a block of its own.
 */
export function escapeMarkdown(text: string): string {
  return String(text)
    .replace(/[\r\n\u2028\u2029]+/g, ' ')
    .replace(/[!"#$%'()*+,\-./:;=?@[\\\]^_`{|}~]/g, '\\$&')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;');
}
