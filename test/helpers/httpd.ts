export { APACHE_BINARY, freePort, startHttpd, type Httpd, type StartHttpdOptions } from '../../src/apache/httpd.js';
