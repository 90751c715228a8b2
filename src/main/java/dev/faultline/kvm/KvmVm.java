package dev.faultline.kvm;

import dev.faultline.hv.Caps;
import dev.faultline.hv.GuestMemfd;
import dev.faultline.hv.MemorySlot;
import dev.faultline.hv.MemslotFlags;
import dev.faultline.hv.Vcpu;
import dev.faultline.hv.Vm;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.Kvm;
import dev.faultline.sys.Libc;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.TreeMap;

/**
 * A KVM VM. Memslot changes are serialised on the VM; vCPUs look slots up in an immutable array
 * snapshot (no lock, no allocation on their exit path).
 */
public final class KvmVm implements Vm, ExitDecoder.MemslotLookup {
    private static final int KNOWN_SLOT_FLAGS = MemslotFlags.LOG_DIRTY_PAGES | MemslotFlags.READONLY | MemslotFlags.GUEST_MEMFD;

    private final KvmHypervisor hypervisor;
    private final int fd;
    private final int type;
    private final String subject;
    private final boolean userMemory2;
    private final TreeMap<Integer, MemorySlot> slotsById = new TreeMap<>();
    private volatile MemorySlot[] slotsByGpa = new MemorySlot[0];
    private final List<KvmVcpu> vcpus = new ArrayList<>();
    private final KvmPoison poison;
    private boolean closed;

    KvmVm(KvmHypervisor hypervisor, int fd, int type) {
        this.hypervisor = hypervisor;
        this.fd = fd;
        this.type = type;
        this.subject = "vm fd " + fd;
        this.poison = new KvmPoison(subject);
        this.userMemory2 = checkExtension(Caps.USER_MEMORY2) > 0;
        // Intel needs three pages for the real-mode TSS; other backends accept and ignore it.
        if (checkExtension(Caps.SET_TSS_ADDR) > 0) Kvm.setTssAddr(fd, Kvm.DEFAULT_TSS_ADDR, subject);
    }

    @Override public KvmHypervisor hypervisor() { return hypervisor; }
    @Override public int type() { return type; }
    public int fd() { return fd; }
    /** Whether memslots go through KVM_SET_USER_MEMORY_REGION2 (KVM_CAP_USER_MEMORY2). */
    public boolean usesRegion2() { return userMemory2; }

    @Override
    public long checkExtension(int cap) {
        return Kvm.checkExtension(fd, cap, subject);
    }

    @Override
    public void enableCap(int cap, long... args) {
        Kvm.enableCap(fd, cap, args, subject);
    }

    @Override
    public synchronized void setMemorySlot(MemorySlot slot) {
        String what = String.format("%s, slot %d gpa 0x%x size 0x%x", subject, slot.slot(), slot.gpa(), slot.size());
        int unknown = slot.flags() & ~KNOWN_SLOT_FLAGS;
        if (unknown != 0) {
            String name = (unknown & MemslotFlags.EXIT_ON_MISSING) != 0 ? "EXIT_ON_MISSING (a seed proposal only the ref backend implements; "
                    + "on kvm, demand paging goes through userfaultfd)" : "0x" + Integer.toHexString(unknown);
            throw new UnsupportedOperationException(what + ": memslot flag " + name + " is not supported by KVM");
        }
        boolean guestMemfd = (slot.flags() & MemslotFlags.GUEST_MEMFD) != 0;
        if (guestMemfd && slot.guestMemfd() == null) {
            throw new IllegalArgumentException(what + ": KVM_MEM_GUEST_MEMFD set but the slot has no guest_memfd");
        }
        long hva = slot.size() == 0 || slot.memory() == null ? 0 : slot.memory().address() + slot.memoryOffset();
        if (slot.size() != 0 && slot.memory() == null) {
            throw new IllegalArgumentException(what + ": a KVM memslot needs host memory (userspace_addr)");
        }
        if (userMemory2) {
            Kvm.setUserMemoryRegion2(fd, slot.slot(), slot.flags(), slot.gpa(), slot.size(), hva,
                    guestMemfd ? slot.guestMemfdOffset() : 0, guestMemfd ? slot.guestMemfd().fd() : 0, what);
        } else {
            if (guestMemfd || slot.guestMemfd() != null) {
                throw new UnsupportedOperationException(what + ": this kernel lacks KVM_CAP_USER_MEMORY2, so a memslot cannot use guest_memfd");
            }
            Kvm.setUserMemoryRegion(fd, slot.slot(), slot.flags(), slot.gpa(), slot.size(), hva, what);
        }
        if (slot.size() == 0) slotsById.remove(slot.slot()); else slotsById.put(slot.slot(), slot);
        MemorySlot[] byGpa = slotsById.values().toArray(new MemorySlot[0]);
        Arrays.sort(byGpa, Comparator.comparingLong(MemorySlot::gpa));
        slotsByGpa = byGpa;
    }

    @Override
    public void injectPoison(long gpa) {
        poison.inject(slotAt(gpa), gpa);
    }

    @Override
    public void replacePoisoned(long gpa, MemorySegment contents) {
        poison.replace(slotAt(gpa), gpa, contents);
    }

    /** A poison mark on kvm is the page table's; it goes only with the page ({@link #replacePoisoned}). */
    @Override
    public void clearPoison(long gpa) {
        throw new ErrnoException("clear poison", Errno.EOPNOTSUPP, subject,
                "on kvm the poison is in the host page table: replace the page (replacePoisoned) instead");
    }

    /** The gpa that host address {@code hva} backs in some memslot, or -1. */
    long gpaOfHostAddress(long hva) {
        for (MemorySlot s : slotsByGpa) {
            if (s.memory() == null) continue;
            long base = s.memory().address() + s.memoryOffset();
            if (hva >= base && hva - base < s.size()) return s.gpa() + (hva - base);
        }
        return -1;
    }

    /** Whether some page is poisoned now. */
    boolean hasPoison() {
        return poison.any();
    }

    /** Whether the page holding {@code gpa} is poisoned (vCPUs ask on memory-fault exits; lock- and allocation-free). */
    boolean isPoisoned(long gpa) {
        return poison.isPoisoned(gpa);
    }

    @Override
    public List<MemorySlot> memorySlots() {
        return List.of(slotsByGpa);
    }

    @Override
    public MemorySlot slotAt(long gpa) {
        for (MemorySlot s : slotsByGpa) if (s.contains(gpa)) return s;
        return null;
    }

    @Override
    public boolean inMemslot(long gpa) {
        for (MemorySlot s : slotsByGpa) if (s.contains(gpa)) return true;
        return false;
    }

    @Override
    public GuestMemfd createGuestMemfd(long size, long flags) {
        String what = subject + ", guest_memfd of 0x" + Long.toHexString(size) + " bytes flags 0x" + Long.toHexString(flags);
        if (checkExtension(Caps.GUEST_MEMFD) <= 0) {
            throw new UnsupportedOperationException(what + ": this kernel lacks KVM_CAP_GUEST_MEMFD");
        }
        return new KvmGuestMemfd(Kvm.createGuestMemfd(fd, size, flags, what), size, flags);
    }

    @Override
    public void setMemoryAttributes(long gpa, long size, long attributes) {
        Kvm.setMemoryAttributes(fd, gpa, size, attributes, String.format("%s, [0x%x, +0x%x) attributes 0x%x", subject, gpa, size, attributes));
    }

    @Override
    public void getDirtyLog(int slot, MemorySegment bitmap) {
        MemorySlot s = slotsById.get(slot);
        if (s != null && bitmap.byteSize() < ((s.size() >>> 12) + 63) / 64 * 8) {
            throw new IllegalArgumentException(subject + ", slot " + slot + ": dirty bitmap of " + bitmap.byteSize()
                    + " bytes is smaller than one bit per page (" + (s.size() >>> 12) + " pages)");
        }
        Kvm.getDirtyLog(fd, slot, bitmap, subject);
    }

    @Override
    public synchronized Vcpu createVcpu(int id) {
        KvmVcpu v = new KvmVcpu(this, id);
        vcpus.add(v);
        return v;
    }

    String subject() { return subject; }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        for (KvmVcpu v : vcpus) v.close();
        poison.close();
        Libc.close(fd);
    }

    @Override
    public String toString() {
        return "kvm " + subject + " (type " + type + ")";
    }
}
