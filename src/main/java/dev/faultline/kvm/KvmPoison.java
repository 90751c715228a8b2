package dev.faultline.kvm;

import dev.faultline.hv.MemorySlot;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.HostMemory;
import dev.faultline.sys.Libc;
import dev.faultline.sys.Userfaultfd;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * Hardware poison on kvm, made with userfaultfd instead of madvise(MADV_HWPOISON) (which needs
 * CONFIG_MEMORY_FAILURE, absent here, and takes a physical page out of service for good):
 *
 * <ul>
 * <li><b>inject</b>: the host page is registered with a userfaultfd of its own (MISSING), emptied
 *     (MADV_DONTNEED: its data is what the poison loses) and given a poison marker (UFFDIO_POISON).
 *     Any access, the guest's through KVM or the host's, now fails as a poisoned page does.</li>
 * <li><b>what the guest's access gives</b>: on this machine's KVM (PVM), an MMIO exit at the gpa,
 *     inside a memslot, whose completion against host memory fails: a memory-fault exit that
 *     {@link KvmVcpu} reports with EHWPOISON when the page is one of these. Upstream KVM on hardware
 *     answers get_user_pages' -EHWPOISON with SIGBUS (BUS_MCEERR_AR) to the vCPU thread; vCPU
 *     threads block SIGBUS and hand KVM a run mask without it, so it ends KVM_RUN with EINTR and is
 *     taken with sigtimedwait ({@link dev.faultline.sys.KickSignal}), never delivered to the JVM. That
 *     second path is written from the kernel source and is not exercised on this machine.</li>
 * <li><b>replace</b>: a fresh private page with the new contents is moved over the poisoned one with
 *     mremap(MREMAP_FIXED), so no vCPU can see anything between the poison and the new data.</li>
 * </ul>
 *
 * Reading a poisoned page from Java would end the JVM (SIGBUS in Java code), so whoever injects must
 * replace every page before the host reads RAM. Only private anonymous RAM, outside any other
 * userfaultfd's registration. The set of poisoned pages is a sorted array replaced on each change:
 * vCPUs read it without a lock or allocation, and only on memory-fault exits.
 */
final class KvmPoison implements AutoCloseable {
    private static final long PAGE = 4096;

    private final String subject;
    private Userfaultfd uffd;
    private Userfaultfd.Caller caller;
    private volatile long[] pages = new long[0];

    KvmPoison(String subject) {
        this.subject = subject;
    }

    /** Whether the page holding {@code gpa} is poisoned (lock-free, allocation-free). */
    boolean isPoisoned(long gpa) {
        long[] p = pages;
        return p.length != 0 && Arrays.binarySearch(p, gpa & ~(PAGE - 1)) >= 0;
    }

    boolean any() { return pages.length != 0; }

    synchronized void inject(MemorySlot slot, long gpa) {
        long page = gpa & ~(PAGE - 1);
        String what = String.format("%s, poison at gpa 0x%x", subject, page);
        check(slot, page, what);
        if (isPoisoned(page)) return;
        if (uffd == null) open(what);
        long hva = slot.hva(page);
        try {
            uffd.register(hva, PAGE, Userfaultfd.REGISTER_MODE_MISSING);
        } catch (ErrnoException e) {
            if (e.errno() == Errno.EBUSY) {
                throw new ErrnoException("UFFDIO_REGISTER", Errno.EBUSY, what,
                        "the page is already under another userfaultfd (a demand pager); poison and demand paging do not mix here");
            }
            throw e;
        }
        Libc.check(Libc.madvise(hva, PAGE, Libc.MADV_DONTNEED), "madvise(MADV_DONTNEED)", what);
        long r = uffd.poison(caller, hva, PAGE, 0);
        if (r != PAGE) throw new ErrnoException("UFFDIO_POISON", r < 0 ? (int) -r : Errno.EAGAIN, what);
        pages = with(pages, page);
    }

    /** Moves a fresh page holding {@code contents} (4096 bytes) over the poisoned page at {@code gpa}. */
    synchronized void replace(MemorySlot slot, long gpa, MemorySegment contents) {
        long page = gpa & ~(PAGE - 1);
        String what = String.format("%s, replacing the poisoned page at gpa 0x%x", subject, page);
        if (!isPoisoned(page)) throw new IllegalArgumentException(what + ": the page is not poisoned");
        if (contents.byteSize() != PAGE) throw new IllegalArgumentException(what + ": contents must be 4096 bytes, not " + contents.byteSize());
        long fresh = Libc.check(Libc.mmap(0, PAGE, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0),
                "mmap", what);
        MemorySegment.copy(contents, 0, MemorySegment.ofAddress(fresh).reinterpret(PAGE), 0, PAGE);
        long hva = slot.hva(page);
        if (Libc.mremap(fresh, PAGE, PAGE, Libc.MREMAP_MAYMOVE | Libc.MREMAP_FIXED, hva) != hva) {
            int errno = Libc.lastErrno();
            Libc.munmap(fresh, PAGE);
            throw new ErrnoException("mremap(MREMAP_FIXED)", errno, what);
        }
        pages = without(pages, page);
    }

    private void check(MemorySlot slot, long page, String what) {
        if (slot == null || !slot.contains(page)) throw new ErrnoException("inject poison", Errno.EINVAL, what, "the gpa is in no memslot");
        if (slot.memory() == null || slot.memory().kind() != HostMemory.Kind.ANONYMOUS) {
            throw new ErrnoException("inject poison", Errno.EOPNOTSUPP, what, "kvm poisons private anonymous RAM only, not " + slot.memory());
        }
    }

    private void open(String what) {
        Userfaultfd u = Userfaultfd.open();
        try {
            long features = u.api(Userfaultfd.FEATURE_POISON);
            if ((features & Userfaultfd.FEATURE_POISON) == 0) {
                throw new ErrnoException("UFFDIO_API", Errno.EOPNOTSUPP, what, "this kernel's userfaultfd lacks UFFD_FEATURE_POISON (Linux 6.6)");
            }
        } catch (RuntimeException e) {
            u.close();
            throw e;
        }
        uffd = u;
        caller = new Userfaultfd.Caller();
    }

    private static long[] with(long[] a, long v) {
        long[] b = Arrays.copyOf(a, a.length + 1);
        b[a.length] = v;
        Arrays.sort(b);
        return b;
    }

    private static long[] without(long[] a, long v) {
        return Arrays.stream(a).filter(x -> x != v).toArray();
    }

    @Override
    public synchronized void close() {
        if (uffd != null) uffd.close();
        uffd = null;
    }
}
