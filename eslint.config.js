// ESLint (flat config) with typescript-eslint: what the compiler does not catch, and the
// direction of imports between the folders (ARCHITECTURE.md). Formatting is Prettier's.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Imports a folder may not make: lower layers never reach up into the ones that use them. */
const LAYERS = {
  'src/security/**': [
    '**/admin/**',
    '**/decide/**',
    '**/session/**',
    '**/identity/**',
    '**/authenticate/**',
    '**/proxy/**',
    '**/forward-auth/**',
    '**/http/**',
    '**/cli/**',
  ],
  'src/policy/**': [
    '**/admin/**',
    '**/session/**',
    '**/authenticate/**',
    '**/proxy/**',
    '**/forward-auth/**',
    '**/http/**',
    '**/cli/**',
  ],
  'src/session/**': [
    '**/admin/**',
    '**/authenticate/**',
    '**/proxy/**',
    '**/forward-auth/**',
    '**/http/**',
    '**/cli/**',
  ],
  'src/identity/**': [
    '**/admin/**',
    '**/authenticate/**',
    '**/proxy/**',
    '**/forward-auth/**',
    '**/http/**',
    '**/cli/**',
    '**/config/build*',
  ],
  'src/decide/**': [
    '**/admin/**',
    '**/authenticate/**',
    '**/proxy/**',
    '**/forward-auth/**',
    '**/http/**',
    '**/cli/**',
  ],
  'src/http/**': ['**/admin/**', '**/proxy/**', '**/forward-auth/**', '**/cli/**'],
  'src/authenticate/**': ['**/admin/**', '**/proxy/**', '**/forward-auth/**', '**/cli/**'],
  'src/admin/**': ['**/proxy/**', '**/forward-auth/**', '**/cli/**'],
  'src/forward-auth/**': ['**/admin/**', '**/proxy/**', '**/cli/**'],
  'src/proxy/**': ['**/cli/**'],
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2023, sourceType: 'module' },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      '@typescript-eslint/consistent-type-imports': [
        'error',
        { fixStyle: 'inline-type-imports', disallowTypeAnnotations: false },
      ],
      'no-constant-condition': ['error', { checkLoops: false }],
      eqeqeq: ['error', 'always'],
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  ...Object.entries(LAYERS).map(([files, banned]) => ({
    files: [`${files}/*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: banned,
              message: 'this folder sits below the one imported: see ARCHITECTURE.md',
            },
          ],
        },
      ],
    },
  })),
  {
    files: ['**/*.mjs', 'eslint.config.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
  {
    // Tests, the demo and the bench drive real servers and parse what they send back.
    files: ['test/**/*.ts', 'demo/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
);
