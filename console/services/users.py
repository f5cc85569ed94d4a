"""The master's users (admins only): list, create, delete."""

from __future__ import annotations

from console.message import action, async_slot, info
from console.models.tables import UserTableModel
from console.services.feature import FeatureService
from console.services.session import Session


class UsersService(FeatureService):
    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.model = UserTableModel(self)

    @async_slot()
    @action("listing users")
    async def reload(self) -> None:
        if not self.session.is_admin:
            self._set("users", False, "users: only an admin can manage users")
            return
        rows = await self.guarded("users", self.session.require().users())
        if rows is not None:
            self.model.set_rows(r.model_dump() for r in rows)

    @async_slot(str, str, str)
    @action("creating the user")
    async def create(self, username: str, password: str, role: str) -> None:
        user = await self.session.require().create_user(username, password, role)
        self.model.update(user.model_dump())
        info(f"user {username} created")

    @async_slot(str)
    @action("deleting the user")
    async def delete(self, username: str) -> None:
        await self.session.require().delete_user(username)
        self.model.remove(username)
