/* asynckit/api.h: the AK_API mark on every public declaration. The library
 * builds with hidden visibility; only marked names leave it, and the version
 * script (src/asynckit.map) keeps that set to ak_ names. */
#ifndef ASYNCKIT_API_H
#define ASYNCKIT_API_H

#if defined(AK_BUILDING) && defined(__GNUC__)
#define AK_API __attribute__((visibility("default")))
#else
#define AK_API
#endif

#endif /* ASYNCKIT_API_H */
