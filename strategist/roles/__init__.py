"""The four roles. Each receives a ChatModel; none imports a provider."""

from .customer import Customer
from .judge import Judge
from .student import Student
from .teacher import Proposal, Teacher

__all__ = ["Customer", "Judge", "Proposal", "Student", "Teacher"]
