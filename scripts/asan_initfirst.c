/*
 * asan_initfirst.c
 *		make test SANITIZE=address: initialise the ASan runtime before any
 *		other library's constructor runs (scripts/sanitize.sh preloads this
 *		object after libasan).
 *
 * A program built with ASan calls __asan_init from its .preinit_array,
 * before every constructor.  The stock server is not built with it: with
 * libasan only preloaded, the runtime initialises lazily at the first
 * malloc, and the first one comes from libp11-kit's constructor (through
 * libpq, gnutls) inside newlocale(), which holds glibc's setlocale lock; the
 * runtime's initialisation calls dlerror(), which takes that lock again,
 * and the process hangs (postgres -V, psql -V).  This object is linked with
 * -z initfirst, so the dynamic linker runs its constructor first.
 */
extern void __asan_init(void);

__attribute__((constructor))
static void
asan_init_first(void)
{
	__asan_init();
}
