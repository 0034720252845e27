import * as vscode from 'vscode';
import { contentSecurityPolicy, escapeHtml, newNonce } from './csp';

/**
 * The one place that builds webview HTML: a fresh nonce per load, a CSP that allows only our own bundled
 * script and styles (no inline script, no eval, no remote content), and resource roots limited to the
 * extension's media and dist folders.
 */
export function webviewOptions(extensionUri: vscode.Uri): vscode.WebviewOptions & vscode.WebviewPanelOptions {
  return {
    enableScripts: true,
    enableCommandUris: false,
    localResourceRoots: [vscode.Uri.joinPath(extensionUri, 'media'), vscode.Uri.joinPath(extensionUri, 'dist')],
    retainContextWhenHidden: false,
  };
}

export interface PageSpec {
  title: string;
  /** Bundle under dist/webview, e.g. 'layerStack.js'. */
  script: string;
  /** Stylesheets under dist/webview or media. */
  styles: Array<{ folder: 'dist/webview' | 'media'; file: string }>;
  body: string;
}

export function renderPage(webview: vscode.Webview, extensionUri: vscode.Uri, spec: PageSpec): string {
  const nonce = newNonce();
  const uri = (...segments: string[]) => webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, ...segments)).toString();
  const links = spec.styles.map((s) => `<link rel="stylesheet" href="${uri(...s.folder.split('/'), s.file)}">`).join('\n    ');
  return `<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <meta http-equiv="Content-Security-Policy" content="${contentSecurityPolicy(webview.cspSource, nonce)}">
    <meta property="csp-nonce" content="${nonce}">
    <meta name="viewport" content="width=device-width, initial-scale=1.0">
    ${links}
    <title>${escapeHtml(spec.title)}</title>
  </head>
  <body>
    ${spec.body}
    <script nonce="${nonce}" src="${uri('dist', 'webview', spec.script)}"></script>
  </body>
</html>`;
}

/**
 * Wires a webview's incoming messages through a parser; anything that does not parse is dropped and
 * logged, never acted on.
 */
export function onValidatedMessage<T>(
  webview: vscode.Webview,
  parse: (raw: unknown) => T | undefined,
  handle: (message: T) => unknown,
  log: (line: string) => void,
): vscode.Disposable {
  return webview.onDidReceiveMessage(async (raw: unknown) => {
    const message = parse(raw);
    if (message === undefined) {
      log(`ignored an invalid webview message: ${safePreview(raw)}`);
      return;
    }
    await handle(message);
  });
}

function safePreview(raw: unknown): string {
  try {
    return (JSON.stringify(raw) ?? String(raw)).slice(0, 200);
  } catch {
    return '(unserialisable)';
  }
}
