package dev.faultline.sys;

/**
 * {@code struct kvm_run} (x86-64), the page(s) mmap'ed from a vCPU fd (KVM_GET_VCPU_MMAP_SIZE bytes;
 * port-I/O data follows at {@code io.data_offset}, normally the next page).
 *
 * <pre>
 *   0 +------------------------+-----------------+----------------------------+
 *     | request_interrupt_win u8| immediate_exit u8| padding1[6]              |
 *   8 +------------------------+-----------------+----------------------------+
 *     | exit_reason u32        | ready_for_irq u8 | if_flag u8 | flags u16    |
 *  16 | cr8 u64                                                               |
 *  24 | apic_base u64                                                         |
 *  32 +--- exit union (256 bytes) --------------------------------------------+
 *     | io:        direction u8 @32, size u8 @33, port u16 @34, count u32 @36,|
 *     |            data_offset u64 @40                                        |
 *     | mmio:      phys_addr u64 @32, data[8] @40, len u32 @48, is_write u8 @52|
 *     | fail_entry: hardware_entry_failure_reason u64 @32, cpu u32 @40        |
 *     | internal:  suberror u32 @32, ndata u32 @36, data[16] u64 @40          |
 *     | hypercall: nr u64 @32, args[6] u64 @40, ret u64 @88, flags u64 @96    |
 *     | system_event: type u32 @32, ndata u32 @36, data[16] u64 @40           |
 *     | memory_fault: flags u64 @32, gpa u64 @40, size u64 @48                |
 * 288 +-----------------------------------------------------------------------+
 *     | kvm_valid_regs u64 @288 | kvm_dirty_regs u64 @296 | s (2048) @304     |
 * 2352 +----------------------------------------------------------------------+
 * </pre>
 */
public final class KvmRunLayout {
    private KvmRunLayout() {}

    public static final long REQUEST_INTERRUPT_WINDOW = 0;
    public static final long IMMEDIATE_EXIT = 1;
    public static final long EXIT_REASON = 8;
    public static final long READY_FOR_INTERRUPT_INJECTION = 12;
    public static final long IF_FLAG = 13;
    public static final long FLAGS = 14;
    public static final long CR8 = 16;
    public static final long APIC_BASE = 24;
    public static final long EXIT_UNION = 32;
    public static final long EXIT_UNION_SIZE = 256;

    public static final long IO_DIRECTION = 32;
    public static final long IO_SIZE = 33;
    public static final long IO_PORT = 34;
    public static final long IO_COUNT = 36;
    public static final long IO_DATA_OFFSET = 40;

    public static final long MMIO_PHYS_ADDR = 32;
    public static final long MMIO_DATA = 40;
    public static final long MMIO_DATA_SIZE = 8;
    public static final long MMIO_LEN = 48;
    public static final long MMIO_IS_WRITE = 52;

    public static final long FAIL_ENTRY_HARDWARE_REASON = 32;
    public static final long FAIL_ENTRY_CPU = 40;

    public static final long INTERNAL_SUBERROR = 32;
    public static final long INTERNAL_NDATA = 36;
    public static final long INTERNAL_DATA = 40;
    public static final int INTERNAL_DATA_WORDS = 16;

    public static final long HYPERCALL_NR = 32;
    public static final long HYPERCALL_ARGS = 40;
    public static final long HYPERCALL_RET = 88;
    public static final long HYPERCALL_FLAGS = 96;

    public static final long SYSTEM_EVENT_TYPE = 32;
    public static final long SYSTEM_EVENT_NDATA = 36;
    public static final long SYSTEM_EVENT_DATA = 40;

    public static final long MEMORY_FAULT_FLAGS = 32;
    public static final long MEMORY_FAULT_GPA = 40;
    public static final long MEMORY_FAULT_SIZE = 48;

    public static final long KVM_VALID_REGS = 288;
    public static final long KVM_DIRTY_REGS = 296;
    public static final long SYNC_REGS = 304;
    /** sizeof(struct kvm_run) on x86-64. */
    public static final long SIZE = 2352;

    /** kvm_run.io.direction values. */
    public static final int IO_DIRECTION_IN = 0, IO_DIRECTION_OUT = 1;
}
