// Lint, and the import boundaries the tsconfigs cannot express: which part may import which (the type
// checker sees only what a part's code may use, e.g. no DOM in the host, no Node in a page).
//   webview/**    src/shared/** and packages only: no host module, no vscode, no Node built-ins
//   src/shared/** nothing outside src/shared, not even a package
//   src/**        no page code (webview/**)
import js from '@eslint/js';
import { builtinModules } from 'node:module';
import tseslint from 'typescript-eslint';

const nodeBuiltins = {
  regex: `^(node:.*|${builtinModules.filter((m) => !m.startsWith('_')).map((m) => m.replace(/[/]/g, '\\/')).join('|')})$`,
  message: 'A webview page runs in a browser: Node modules are not there.',
};

/** src/shared at depth d: a relative import that climbs more than d folders leaves it. */
const sharedDepths = [0, 1, 2, 3, 4].map((depth) => ({
  files: [`src/shared/${'*/'.repeat(depth)}*.ts`],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
          { regex: '^[^.]', message: 'src/shared is imported by the host and the pages alike: it uses no package, no Node and no vscode.' },
          { regex: `^(\\.\\./){${depth + 1},}`, message: 'src/shared imports only from src/shared.' },
        ],
      },
    ],
  },
}));

export default tseslint.config(
  {
    ignores: ['dist/**', 'node_modules/**', '.venv/**', '.tools/**', '.demo/**', '.l3prune/**', 'test-artifacts/**', 'worker/**', '**/*.vsix'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      // `_name` marks a binding kept on purpose (a destructured field left out, a parameter a signature needs).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }],
    },
  },
  {
    files: ['scripts/**/*.mjs', 'bin/**/*.js', 'eslint.config.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
  {
    files: ['bin/**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'writable', __dirname: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['webview/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [{ name: 'vscode', message: 'A webview page talks to the host by messages (webview/shared/vscodeApi.ts), never through the vscode module.' }],
          patterns: [nodeBuiltins, { regex: '(^|/)src/(?!shared/)', message: 'Pages import only src/shared/ of the host tree.' }],
        },
      ],
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/shared/**'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ regex: '(^|/)webview/', message: 'The host does not import page code; shared code goes in src/shared/.' }] }],
    },
  },
  ...sharedDepths,
);
