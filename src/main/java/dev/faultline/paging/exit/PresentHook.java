package dev.faultline.paging.exit;

/**
 * Makes pages the core has just written into guest RAM visible to the guest, for exit-based
 * delivery: on the ref backend, clearing the pages' "missing" state under the exit-on-missing
 * memslot flag (the ref integration supplies it). Called on the thread that served the fault; it
 * must be idempotent (a page may be marked twice when two vCPUs faulted on it).
 */
@FunctionalInterface
public interface PresentHook {
    void markPresent(long gpa, long len);
}
