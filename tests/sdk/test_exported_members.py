"""The public surface of `runyard` is declared once, sorted, and complete."""

import subprocess
import sys
import types

import runyard


def test_all_imports_are_exported() -> None:
    included_private_members = ["__version__"]
    public = (
        name
        for name, value in vars(runyard).items()
        if (not name.startswith("_") or name in included_private_members)
        # Subpackages (runyard.domain, and the server's packages once imported) are not SDK members.
        and not isinstance(value, types.ModuleType)
    )
    assert runyard.__all__ == sorted(public, key=str.casefold)


def test_exported_classes_report_the_package_as_their_module() -> None:
    for name in runyard.__all__:
        value = getattr(runyard, name)
        if isinstance(value, type):
            assert value.__module__ == "runyard", name


def test_import_is_cheap() -> None:
    # httpx itself pulls in rich and click for its CLI when they are installed; that is not ours.
    code = (
        "import sys, runyard; "
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "{'fastapi', 'starlette', 'sqlalchemy', 'pydantic_ai', 'uvicorn', 'typer'} "
        "or (m + '.').startswith(('runyard.server.', 'runyard.store.', 'runyard.worker.', 'runyard.bus.', "
        "'runyard.cli.', 'runyard.config.'))]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_timeout_error_is_also_the_builtin() -> None:
    import builtins

    assert issubclass(runyard.TimeoutError, builtins.TimeoutError)
    assert issubclass(runyard.TimeoutError, runyard.RunyardError)
    assert runyard.ValidationError is not __import__("pydantic").ValidationError


def test_every_public_sdk_class_and_method_has_a_docstring() -> None:
    from runyard.client import resources

    classes = [
        *runyard.Runyard.__mro__[:-1], *runyard.AsyncRunyard.__mro__[:-1], runyard.RunStream, runyard.AsyncRunStream,
        runyard.RunAccumulator, runyard.SSEDecoder, runyard.ServerSentEvent, runyard.SyncPage,
        runyard.AsyncPage, runyard.AsyncPaginator, *runyard.SyncPage.__mro__[1:-2], runyard.NotGiven, runyard.AgentDeleted,
        *(getattr(resources, name) for name in resources.__all__),
        *(value for value in vars(runyard).values() if isinstance(value, type) and issubclass(value, BaseException)),
    ]
    missing = []
    for cls in classes:
        if not (cls.__doc__ or "").strip():
            missing.append(cls.__qualname__)
        for name, member in vars(cls).items():
            if name.startswith("_") or not callable(member) and not isinstance(member, property):
                continue
            target = member.fget if isinstance(member, property) else member
            if not (getattr(target, "__doc__", None) or "").strip():
                missing.append(f"{cls.__qualname__}.{name}")
    assert missing == []
