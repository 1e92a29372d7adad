"""Linux user mode: run one guest Linux process on the host (``pyqemu-aarch64``).

Modules: ``mmap`` (the guest address space, a MemoryProvider over one reserved host
range), ``loader`` (ELF + initial stack), ``syscall`` (the generic syscall layer and its
pass-through table), ``signal`` (dispositions, queues, delivery), ``thread``
(clone/fork/execve), ``main`` (Process, Task, the cpu loop), ``aarch64/`` (syscall
numbers, the syscall table, the rt_sigframe).

Errors (none escapes to the user as a traceback)::

    ElfError            the executable cannot be loaded (one line, QEMU's exit status)
    GuestFault          a syscall touched guest memory it may not -> -EFAULT
    SyscallExit         exit/exit_group unwinding the cpu loop
    OSError             from the host inside a handler -> -errno (syscall.do_syscall)
"""
