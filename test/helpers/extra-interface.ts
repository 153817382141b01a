// Preloaded into a gateway child (`NODE_OPTIONS=--import …`): os.networkInterfaces() reports one more interface holding the IPv4 address TEST_EXTRA_INTERFACE_ADDRESS, as on a host with a public address.

import { syncBuiltinESMExports } from 'node:module';
import os from 'node:os';

const address = process.env.TEST_EXTRA_INTERFACE_ADDRESS;
if (address !== undefined) {
  const readInterfaces = os.networkInterfaces;
  os.networkInterfaces = () => ({
    ...readInterfaces(),
    test0: [{ address, netmask: '255.255.255.255', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: `${address}/32` }],
  });
  syncBuiltinESMExports();
}
