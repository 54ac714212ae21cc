/**
 * The dependency graph rules: no cycles, no relative imports that reach into another package,
 * no deep imports of sibling packages (only their public entry or `/internal`), no import of a
 * package that is not declared in package.json.
 * @type {import('dependency-cruiser').IConfiguration}
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Import cycles hide layering mistakes.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-relative-cross-package',
      severity: 'error',
      comment: 'Import a sibling through @meshroute/<name> (or /internal), never by a relative path.',
      from: { path: '^packages/([^/]+)/' },
      to: { path: '^packages/([^/]+)/', pathNot: '^packages/$1/', dependencyTypesNot: ['aliased-workspace'] },
    },
    {
      name: 'no-deep-sibling-import',
      severity: 'error',
      comment: 'Only a package entry (index or internal) may be imported by another package.',
      from: { path: '^packages/([^/]+)/' },
      to: { path: '^packages/([^/]+)/src/(?!index\\.ts$|internal\\.ts$)', pathNot: '^packages/$1/' },
    },
    {
      name: 'no-undeclared-deps',
      severity: 'error',
      comment: 'Every imported package must be declared in the importing package.json.',
      from: { path: '^packages/' },
      to: { dependencyTypes: ['npm-no-pkg', 'npm-unknown'] },
    },
    {
      name: 'no-dev-deps-in-src',
      severity: 'error',
      comment: 'Library code may not import dev dependencies.',
      from: { path: '^packages/[^/]+/src/', pathNot: '\\.(test|bench)\\.ts$|/test-support/' },
      to: { dependencyTypes: ['npm-dev'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(dist|build|node_modules)/' },
    tsPreCompilationDeps: true,
    combinedDependencies: true,
    enhancedResolveOptions: {
      conditionNames: ['@meshroute/source', 'import', 'node', 'default'],
      exportsFields: ['exports'],
    },
    tsConfig: { fileName: 'tsconfig.base.json' },
  },
};
