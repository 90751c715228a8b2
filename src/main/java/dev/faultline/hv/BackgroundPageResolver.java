package dev.faultline.hv;

/**
 * Brings a missing page in on a backend worker thread, for asynchronous page faults (seed 004): the
 * vCPU that touched the page does not exit; it waits as KVM's artificial halt does, other vCPUs run
 * on, and the access is retried when the resolver returns. A resolver that fails for a page makes
 * the backend handle that gfn synchronously on the retry, which reaches userspace as a memory-fault
 * exit, instead of retrying forever.
 */
@FunctionalInterface
public interface BackgroundPageResolver {
    /**
     * Installs the page at {@code gpaPage} (writes its data and marks it present in the slot's
     * {@link UserfaultBitmap}). Runs on the backend's worker thread; must not block indefinitely.
     * @return true when the page is now present, false when it could not be brought in
     */
    boolean resolve(long gpaPage);
}
