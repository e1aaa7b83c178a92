export { APACHE_BINARY, freePort, startHttpd, type Httpd, type StartHttpdOptions } from '../../src/demo/httpd.js';
