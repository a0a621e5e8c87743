/* asynckit.h: the umbrella header. It includes only the asynckit/ concept
 * headers; each of those compiles on its own as well.
 */
#ifndef ASYNCKIT_H
#define ASYNCKIT_H

#include "asynckit/version.h"
#include "asynckit/error.h"
#include "asynckit/alloc.h"
#include "asynckit/future.h"
#include "asynckit/loop.h"
#include "asynckit/pool.h"
#include "asynckit/fs.h"
#include "asynckit/batch.h"
#include "asynckit/net.h"
#include "asynckit/signal.h"
#include "asynckit/tls.h"
#include "asynckit/http.h"

#endif /* ASYNCKIT_H */
