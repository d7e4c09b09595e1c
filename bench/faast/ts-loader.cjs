// A webpack loader for faast.js's bundler: esbuild strips the TypeScript of the function module.
const { transformSync } = require('esbuild');

module.exports = function tsLoader(source) {
  return transformSync(source, {
    loader: 'ts',
    format: 'esm',
    target: 'node20',
    sourcefile: this.resourcePath,
  }).code;
};
