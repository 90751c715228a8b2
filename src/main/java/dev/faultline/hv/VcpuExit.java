package dev.faultline.hv;

import dev.faultline.sys.Errno;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Why {@link Vcpu#run()} returned. Each vCPU owns one instance of every kind and refills it at each
 * exit (exactly as KVM refills the mmap'ed kvm_run), so the run loop never allocates: an instance is
 * valid until the next {@code run()} of its vCPU. {@link #record()} gives an immutable copy to keep.
 *
 * <p>The {@code fill} methods are for backends only.
 */
public sealed interface VcpuExit {
    /** The KVM exit reason number ({@link ExitReason}). */
    int reason();

    /** An immutable copy of this exit, for logs and reports. */
    ExitRecord record();

    private static String hex(long v) { return "0x" + Long.toHexString(v); }

    /** KVM_EXIT_IO: port I/O. For IN, write the value with {@link #completeIn(long)} before the next run. */
    final class Io implements VcpuExit {
        public static final int DIR_IN = 0, DIR_OUT = 1;
        private int direction, size, port, count;
        private MemorySegment data = MemorySegment.NULL;

        public void fill(int direction, int size, int port, int count, MemorySegment data) {
            this.direction = direction; this.size = size; this.port = port; this.count = count; this.data = data;
        }
        public int reason() { return ExitReason.IO; }
        public boolean isOut() { return direction == DIR_OUT; }
        public int direction() { return direction; }
        /** Access size in bytes: 1, 2 or 4. */
        public int size() { return size; }
        public int port() { return port; }
        /** Repetitions (rep ins/outs); 1 for a plain in/out. */
        public int count() { return count; }
        /** size * count bytes: the data written by OUT, or the buffer IN reads from. */
        public MemorySegment data() { return data; }
        /** The first element of an OUT, zero-extended. */
        public long value() {
            return switch (size) {
                case 1 -> data.get(ValueLayout.JAVA_BYTE, 0) & 0xffL;
                case 2 -> data.get(ValueLayout.JAVA_SHORT_UNALIGNED, 0) & 0xffffL;
                default -> data.get(ValueLayout.JAVA_INT_UNALIGNED, 0) & 0xffffffffL;
            };
        }
        /** Supplies the value of every element of an IN. */
        public void completeIn(long value) {
            for (int i = 0; i < count; i++) {
                switch (size) {
                    case 1 -> data.set(ValueLayout.JAVA_BYTE, i, (byte) value);
                    case 2 -> data.set(ValueLayout.JAVA_SHORT_UNALIGNED, 2L * i, (short) value);
                    default -> data.set(ValueLayout.JAVA_INT_UNALIGNED, 4L * i, (int) value);
                }
            }
        }
        public ExitRecord record() {
            Map<String, String> m = new LinkedHashMap<>();
            m.put("port", hex(port));
            m.put("size", Integer.toString(size));
            m.put("direction", isOut() ? "out" : "in");
            if (count != 1) m.put("count", Integer.toString(count));
            if (isOut()) m.put("data", hex(value()));
            return new ExitRecord("io", m);
        }
    }

    /** KVM_EXIT_MMIO: an access to a guest-physical address with no memslot. Complete reads with {@link #completeRead(long)}. */
    final class Mmio implements VcpuExit {
        private long gpa;
        private int length;
        private boolean isWrite;
        private MemorySegment data = MemorySegment.NULL;

        public void fill(long gpa, int length, boolean isWrite, MemorySegment data) {
            this.gpa = gpa; this.length = length; this.isWrite = isWrite; this.data = data;
        }
        public int reason() { return ExitReason.MMIO; }
        public long gpa() { return gpa; }
        public int length() { return length; }
        public boolean isWrite() { return isWrite; }
        /** The 8-byte data buffer (kvm_run.mmio.data). */
        public MemorySegment data() { return data; }
        /** The written value (little endian, {@link #length()} bytes, zero-extended). */
        public long value() {
            long v = 0;
            for (int i = length - 1; i >= 0; i--) v = (v << 8) | (data.get(ValueLayout.JAVA_BYTE, i) & 0xffL);
            return v;
        }
        public void completeRead(long value) {
            for (int i = 0; i < length; i++) data.set(ValueLayout.JAVA_BYTE, i, (byte) (value >>> (8 * i)));
        }
        public ExitRecord record() {
            Map<String, String> m = new LinkedHashMap<>();
            m.put("gpa", hex(gpa));
            m.put("length", Integer.toString(length));
            m.put("direction", isWrite ? "write" : "read");
            if (isWrite) m.put("data", hex(value()));
            return new ExitRecord("mmio", m);
        }
    }

    /** KVM_EXIT_HLT. */
    final class Hlt implements VcpuExit {
        private static final ExitRecord RECORD = new ExitRecord("hlt", Map.of());
        public int reason() { return ExitReason.HLT; }
        public ExitRecord record() { return RECORD; }
    }

    /** KVM_EXIT_SHUTDOWN: triple fault or an explicit shutdown. */
    final class Shutdown implements VcpuExit {
        private static final ExitRecord RECORD = new ExitRecord("shutdown", Map.of());
        public int reason() { return ExitReason.SHUTDOWN; }
        public ExitRecord record() { return RECORD; }
    }

    /** KVM_RUN returned EINTR (a kick or a signal): nothing happened in the guest that needs handling. */
    final class Interrupted implements VcpuExit {
        private static final ExitRecord RECORD = new ExitRecord("intr", Map.of());
        public int reason() { return ExitReason.INTR; }
        public ExitRecord record() { return RECORD; }
    }

    /** KVM_EXIT_INTERNAL_ERROR: suberror and its data words (the ref backend puts the instruction bytes there). */
    final class InternalError implements VcpuExit {
        public static final int SUBERROR_EMULATION = 1, SUBERROR_SIMUL_EX = 2, SUBERROR_DELIVERY_EV = 3,
                SUBERROR_UNEXPECTED_EXIT_REASON = 4;
        private int suberror;
        private final long[] data = new long[16];
        private int ndata;
        private String detail = "";

        public void fill(int suberror, long[] words, int n, String detail) {
            this.suberror = suberror;
            this.ndata = Math.min(n, data.length);
            System.arraycopy(words, 0, data, 0, ndata);
            this.detail = detail == null ? "" : detail;
        }
        public int reason() { return ExitReason.INTERNAL_ERROR; }
        public int suberror() { return suberror; }
        public int ndata() { return ndata; }
        public long data(int i) { return data[i]; }
        /** Backend explanation (e.g. the undecodable instruction bytes as hex); may be empty. */
        public String detail() { return detail; }
        public ExitRecord record() {
            Map<String, String> m = new LinkedHashMap<>();
            m.put("suberror", Integer.toString(suberror));
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < ndata; i++) sb.append(i == 0 ? "" : ",").append(hex(data[i]));
            m.put("data", sb.toString());
            if (!detail.isEmpty()) m.put("detail", detail);
            return new ExitRecord("internal_error", m);
        }
    }

    /** KVM_EXIT_FAIL_ENTRY: the hardware refused to enter the guest. */
    final class FailEntry implements VcpuExit {
        private long hardwareReason;
        private int cpu;
        public void fill(long hardwareReason, int cpu) { this.hardwareReason = hardwareReason; this.cpu = cpu; }
        public int reason() { return ExitReason.FAIL_ENTRY; }
        public long hardwareReason() { return hardwareReason; }
        public int cpu() { return cpu; }
        public ExitRecord record() {
            return new ExitRecord("fail_entry", Map.of("hardware_entry_failure_reason", hex(hardwareReason), "cpu", Integer.toString(cpu)));
        }
    }

    /** KVM_EXIT_HYPERCALL (e.g. KVM_HC_MAP_GPA_RANGE = 12): set the guest's return value with {@link #complete(long)}. */
    final class Hypercall implements VcpuExit {
        public static final long KVM_HC_MAP_GPA_RANGE = 12;
        private long nr;
        private final long[] args = new long[6];
        private long ret;
        private int flags;
        public void fill(long nr, long a0, long a1, long a2, long a3, long a4, long a5, int flags) {
            this.nr = nr; args[0] = a0; args[1] = a1; args[2] = a2; args[3] = a3; args[4] = a4; args[5] = a5;
            this.flags = flags; this.ret = 0;
        }
        public int reason() { return ExitReason.HYPERCALL; }
        public long nr() { return nr; }
        public long arg(int i) { return args[i]; }
        public int flags() { return flags; }
        public long result() { return ret; }
        public void complete(long ret) { this.ret = ret; }
        public ExitRecord record() {
            Map<String, String> m = new LinkedHashMap<>();
            m.put("nr", Long.toString(nr));
            for (int i = 0; i < 6; i++) m.put("arg" + i, hex(args[i]));
            return new ExitRecord("hypercall", m);
        }
    }

    /**
     * KVM_EXIT_MEMORY_FAULT: KVM_RUN failed with EFAULT or EHWPOISON and filled memory_fault.
     * {@link Origin#MMIO_IN_MEMSLOT} marks the kvm backend's translation of an MMIO exit at a gpa that
     * lies inside a memslot (uapi.md: this machine's kernel reports unreachable slot memory that way).
     */
    final class MemoryFault implements VcpuExit {
        public enum Origin { KERNEL, MMIO_IN_MEMSLOT }
        private long flags, gpa, size;
        private int errno;
        private Origin origin = Origin.KERNEL;
        public void fill(long flags, long gpa, long size, int errno, Origin origin) {
            this.flags = flags; this.gpa = gpa; this.size = size; this.errno = errno; this.origin = origin;
        }
        public int reason() { return ExitReason.MEMORY_FAULT; }
        public long flags() { return flags; }
        public long gpa() { return gpa; }
        public long size() { return size; }
        /** {@link Errno#EFAULT} or {@link Errno#EHWPOISON}. */
        public int errno() { return errno; }
        public Origin origin() { return origin; }
        public boolean isPrivate() { return (flags & MemoryFaultFlags.PRIVATE) != 0; }
        public ExitRecord record() {
            Map<String, String> m = new LinkedHashMap<>();
            m.put("errno", Errno.name(errno));
            m.put("flags", hex(flags));
            m.put("gpa", hex(gpa));
            m.put("size", hex(size));
            if (origin != Origin.KERNEL) m.put("origin", origin.name().toLowerCase());
            return new ExitRecord("memory_fault", m);
        }
    }

    /** An exit reason this API does not model: reported honestly with its raw number. */
    final class Unknown implements VcpuExit {
        private int rawReason;
        public void fill(int rawReason) { this.rawReason = rawReason; }
        public int reason() { return rawReason; }
        public ExitRecord record() { return new ExitRecord(ExitReason.name(rawReason), Map.of("raw_reason", Integer.toString(rawReason))); }
    }

    /** One instance of every exit kind, owned by one vCPU. */
    final class Set {
        public final Io io = new Io();
        public final Mmio mmio = new Mmio();
        public final Hlt hlt = new Hlt();
        public final Shutdown shutdown = new Shutdown();
        public final Interrupted interrupted = new Interrupted();
        public final InternalError internalError = new InternalError();
        public final FailEntry failEntry = new FailEntry();
        public final Hypercall hypercall = new Hypercall();
        public final MemoryFault memoryFault = new MemoryFault();
        public final Unknown unknown = new Unknown();
    }
}
