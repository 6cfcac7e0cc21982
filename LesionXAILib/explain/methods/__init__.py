"""The registered attribution methods, one file each; every module here registers its method(s) on import.

:mod:`LesionXAILib.explain.registry` imports every module of this package (except ``base``) the first time
it is read: a new method is a new file here with its class and one ``register(MethodSpec(...))`` call.
"""
