package dev.faultline.sys;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import org.junit.jupiter.api.Test;

/** Struct sizes and offsets against uapi.md and the kernel headers (sizeof/offsetof printed by C on x86-64). */
class LayoutsTest {
    @Test
    void shouldPlaceKvmRunFieldsWhereUapiSaysTheyAre() {
        assertEquals(8, KvmRunLayout.EXIT_REASON);
        assertEquals(14, KvmRunLayout.FLAGS);
        assertEquals(32, KvmRunLayout.MEMORY_FAULT_FLAGS);
        assertEquals(40, KvmRunLayout.MEMORY_FAULT_GPA);
        assertEquals(48, KvmRunLayout.MEMORY_FAULT_SIZE);
        assertEquals(256, KvmRunLayout.EXIT_UNION_SIZE);
        assertEquals(KvmRunLayout.EXIT_UNION + KvmRunLayout.EXIT_UNION_SIZE, KvmRunLayout.KVM_VALID_REGS);
        assertEquals(0x930, KvmRunLayout.SIZE);
        assertEquals(KvmRunLayout.SYNC_REGS + 2048, KvmRunLayout.SIZE);
    }

    @Test
    void shouldSizeTheKvmStructsAsTheKernelDoes() {
        assertEquals(144, KvmRegsLayout.SIZE);
        assertEquals(0x138, KvmSregsLayout.SIZE);
        assertEquals(8 * KvmSegmentLayout.SIZE, KvmSregsLayout.GDT);
        assertEquals(KvmSregsLayout.INTERRUPT_BITMAP + 8L * KvmSregsLayout.INTERRUPT_BITMAP_WORDS, KvmSregsLayout.SIZE);
        assertEquals(160, KvmUserspaceMemoryRegion2Layout.SIZE);
        assertEquals(KvmUserspaceMemoryRegion2Layout.PAD2 + 14 * 8, KvmUserspaceMemoryRegion2Layout.SIZE);
        assertEquals(40, KvmUserspaceMemoryRegion2Layout.GUEST_MEMFD);
        assertEquals(32, KvmUserspaceMemoryRegionLayout.SIZE);
        assertEquals(64, KvmCreateGuestMemfdLayout.SIZE);
        assertEquals(32, KvmMemoryAttributesLayout.SIZE);
        assertEquals(104, KvmEnableCapLayout.SIZE);
        assertEquals(16, KvmDirtyLogLayout.SIZE);
        assertEquals(40, KvmCpuid2Layout.ENTRY_SIZE);
    }

    @Test
    void shouldSizeTheUserfaultfdStructsAsTheKernelDoes() {
        assertEquals(24, UffdioApiLayout.SIZE);
        assertEquals(32, UffdioRegisterLayout.SIZE);
        assertEquals(40, UffdioCopyLayout.SIZE);
        assertEquals(32, UffdioZeropageLayout.SIZE);
        assertEquals(32, UffdioContinueLayout.SIZE);
        // Userfaultfd serves UFFDIO_ZEROPAGE and UFFDIO_CONTINUE with one layout
        assertEquals(UffdioZeropageLayout.RANGE_START, UffdioContinueLayout.RANGE_START);
        assertEquals(UffdioZeropageLayout.RANGE_LEN, UffdioContinueLayout.RANGE_LEN);
        assertEquals(UffdioZeropageLayout.MODE, UffdioContinueLayout.MODE);
        assertEquals(UffdioZeropageLayout.ZEROPAGE, UffdioContinueLayout.MAPPED);
        assertEquals(32, UffdMsgLayout.SIZE);
        assertEquals(16, UffdMsgLayout.PAGEFAULT_ADDRESS);
    }

    @Test
    void shouldMapKvmRegsOrderToX86EncodingOrder() {
        // Encoding order RAX RCX RDX RBX RSP RBP RSI RDI; kvm_regs order rax rbx rcx rdx rsi rdi rsp rbp.
        assertEquals(KvmRegsLayout.RAX, KvmRegsLayout.offsetOfEncoding(0));
        assertEquals(KvmRegsLayout.RCX, KvmRegsLayout.offsetOfEncoding(1));
        assertEquals(KvmRegsLayout.RDX, KvmRegsLayout.offsetOfEncoding(2));
        assertEquals(KvmRegsLayout.RBX, KvmRegsLayout.offsetOfEncoding(3));
        assertEquals(KvmRegsLayout.RSP, KvmRegsLayout.offsetOfEncoding(4));
        assertEquals(KvmRegsLayout.RBP, KvmRegsLayout.offsetOfEncoding(5));
        assertEquals(KvmRegsLayout.RSI, KvmRegsLayout.offsetOfEncoding(6));
        assertEquals(KvmRegsLayout.RDI, KvmRegsLayout.offsetOfEncoding(7));
        assertEquals(KvmRegsLayout.R15, KvmRegsLayout.offsetOfEncoding(15));
    }

    @Test
    void shouldNameUserfaultfdFeatureBitsInBitOrder() {
        assertEquals(List.of("EVENT_REMOVE", "MISSING_SHMEM", "MINOR_SHMEM"),
                Userfaultfd.featureNames(Userfaultfd.FEATURE_EVENT_REMOVE | Userfaultfd.FEATURE_MISSING_SHMEM | Userfaultfd.FEATURE_MINOR_SHMEM));
        assertEquals(0x400, Userfaultfd.FEATURE_MINOR_SHMEM);
        assertEquals(0x800, Userfaultfd.FEATURE_EXACT_ADDRESS);
        assertEquals(List.of("bit 40"), Userfaultfd.featureNames(1L << 40));
        assertEquals(List.of("WAKE", "COPY", "ZEROPAGE", "CONTINUE"), Userfaultfd.ioctlNames(0x9cL));
    }
}
