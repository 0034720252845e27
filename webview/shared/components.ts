/**
 * The only module that knows which UI component library the webviews use. The owner asked for
 * @vscode/webview-ui-toolkit, which its authors have sunset; keeping it behind this file makes a move to
 * its successor (@vscode-elements/elements) one change.
 */
import { provideVSCodeDesignSystem, vsCodeButton, vsCodeDivider } from '@vscode/webview-ui-toolkit';

let registered = false;

export function registerComponents(): void {
  if (registered) return;
  provideVSCodeDesignSystem().register(vsCodeButton(), vsCodeDivider());
  registered = true;
}

export function button(label: string, id: string, appearance: 'primary' | 'secondary' = 'secondary'): HTMLElement {
  const element = document.createElement('vscode-button');
  element.id = id;
  element.setAttribute('appearance', appearance);
  element.textContent = label;
  return element;
}

/**
 * A plain span, not the toolkit's vscode-tag: that is a FAST badge whose template binds a style attribute, which
 * the page's CSP blocks (one violation per page load).
 */
export function tag(text: string): HTMLElement {
  const element = document.createElement('span');
  element.className = 'tag';
  element.textContent = text;
  return element;
}

export function divider(): HTMLElement {
  return document.createElement('vscode-divider');
}
