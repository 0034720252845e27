import * as vscode from 'vscode';

export { escapeMarkdown } from './markdownText';

/** A MarkdownString for text built from workspace data: no command links, no HTML, no theme icons. */
export function untrustedMarkdown(text: string): vscode.MarkdownString {
  const markdown = new vscode.MarkdownString(text, false);
  markdown.isTrusted = false;
  markdown.supportHtml = false;
  markdown.supportThemeIcons = false;
  return markdown;
}
