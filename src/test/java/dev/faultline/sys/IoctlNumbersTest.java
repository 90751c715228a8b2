package dev.faultline.sys;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/**
 * The ioctl numbers computed from the _IOC encoding against the literal numbers of uapi.md and of the
 * kernel headers (linux/kvm.h, linux/userfaultfd.h, as printed by a C program on this machine).
 */
class IoctlNumbersTest {
    @Test
    void shouldEncodeKvmSystemAndVmIoctlsAsTheHeadersDo() {
        assertEquals(0xAE00L, Kvm.KVM_GET_API_VERSION);
        assertEquals(0xAE01L, Kvm.KVM_CREATE_VM);
        assertEquals(0xAE03L, Kvm.KVM_CHECK_EXTENSION);
        assertEquals(0xAE04L, Kvm.KVM_GET_VCPU_MMAP_SIZE);
        assertEquals(0xC008AE05L, Kvm.KVM_GET_SUPPORTED_CPUID);
        assertEquals(0xAE41L, Kvm.KVM_CREATE_VCPU);
        assertEquals(0x4010AE42L, Kvm.KVM_GET_DIRTY_LOG);
        assertEquals(0x4020AE46L, Kvm.KVM_SET_USER_MEMORY_REGION);
        assertEquals(0xAE47L, Kvm.KVM_SET_TSS_ADDR);
        assertEquals(0x4008AE48L, Kvm.KVM_SET_IDENTITY_MAP_ADDR);
        assertEquals(0x40A0AE49L, Kvm.KVM_SET_USER_MEMORY_REGION2);
        assertEquals(0x4068AEA3L, Kvm.KVM_ENABLE_CAP);
        assertEquals(0x4020AED2L, Kvm.KVM_SET_MEMORY_ATTRIBUTES);
        assertEquals(0xC040AED4L, Kvm.KVM_CREATE_GUEST_MEMFD);
        assertEquals(0xC040AED5L, Kvm.KVM_PRE_FAULT_MEMORY);
    }

    @Test
    void shouldEncodeKvmVcpuIoctlsAsTheHeadersDo() {
        assertEquals(0xAE80L, Kvm.KVM_RUN);
        assertEquals(0x8090AE81L, Kvm.KVM_GET_REGS);
        assertEquals(0xC018AE85L, Kvm.KVM_TRANSLATE);
        assertEquals(0x4090AE82L, Kvm.KVM_SET_REGS);
        assertEquals(0x8138AE83L, Kvm.KVM_GET_SREGS);
        assertEquals(0x4138AE84L, Kvm.KVM_SET_SREGS);
        assertEquals(0x4004AE8BL, Kvm.KVM_SET_SIGNAL_MASK);
        assertEquals(0x4008AE90L, Kvm.KVM_SET_CPUID2);
    }

    @Test
    void shouldEncodeUserfaultfdIoctlsAsTheHeadersDo() {
        assertEquals(0xC018AA3FL, Userfaultfd.UFFDIO_API);
        assertEquals(0xC020AA00L, Userfaultfd.UFFDIO_REGISTER);
        assertEquals(0x8010AA01L, Userfaultfd.UFFDIO_UNREGISTER);
        assertEquals(0x8010AA02L, Userfaultfd.UFFDIO_WAKE);
        assertEquals(0xC028AA03L, Userfaultfd.UFFDIO_COPY);
        assertEquals(0xC020AA04L, Userfaultfd.UFFDIO_ZEROPAGE);
        assertEquals(0xC018AA06L, Userfaultfd.UFFDIO_WRITEPROTECT);
        assertEquals(0xC020AA07L, Userfaultfd.UFFDIO_CONTINUE);
        assertEquals(0xC020AA08L, Userfaultfd.UFFDIO_POISON);
        assertEquals(0xAA00L, Userfaultfd.USERFAULTFD_IOC_NEW);
    }

    @Test
    void shouldPlaceDirectionSizeTypeAndNumberInTheirBitFields() {
        long n = Ioc.iowr(0xAE, 0xd4, 64);
        assertEquals(3, n >>> 30);
        assertEquals(64, (n >>> 16) & 0x3fff);
        assertEquals(0xAE, (n >>> 8) & 0xff);
        assertEquals(0xd4, n & 0xff);
    }
}
